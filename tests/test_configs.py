import pytest
import torch
from torchgan.trainer import Trainer

from torchgan_sagan import LOSSES, SAGANConfig, get_config, list_configs, register_config
from torchgan_sagan import configs as configs_module
from torchgan_sagan.layers import SelfAttention2d


def _one_iteration(cfg, tmp_path, batch=2):
    trainer = Trainer(
        cfg.network_params(),
        cfg.losses(),
        device=torch.device("cpu"),
        checkpoints=str(tmp_path / "ckpt" / "gan"),
        recon=str(tmp_path / "images"),
        log_dir=str(tmp_path / "logs"),
        **cfg.trainer_kwargs(),
    )
    size, channels = cfg.image_size, cfg.image_channels
    trainer.real_inputs = torch.rand(batch, channels, size, size) * 2 - 1
    trainer.batch_size = batch
    if cfg.num_classes:
        trainer.labels = torch.randint(0, cfg.num_classes, (batch,))
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    lgen, ldis, gen_iters, dis_iters = trainer.train_iter()
    assert dis_iters >= 1
    assert torch.isfinite(torch.tensor([lgen, ldis])).all()
    return trainer, before


@pytest.mark.parametrize("name", list_configs())
def test_every_config_runs_one_trainer_iteration(name, tmp_path):
    cfg = get_config(name, step_channels=8, sample_size=4)
    assert cfg.source, f"{name} documents no source"
    trainer, before = _one_iteration(cfg, tmp_path)
    assert trainer.generator.out_size == cfg.image_size
    after = list(trainer.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "G did not train"


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_the_sagan_nets(loss, tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, loss=loss)
    trainer, _ = _one_iteration(cfg, tmp_path)
    fused = [m.fused for m in trainer.discriminator.modules() if isinstance(m, SelfAttention2d)]
    assert fused == [loss not in configs_module.GRADIENT_PENALTY_LOSSES]


def test_paper_recipe():
    cfg = get_config("sagan_celeba_64")
    assert (cfg.loss, cfg.g_lr, cfg.d_lr, cfg.betas, cfg.ncritic) == ("hinge", 1e-4, 4e-4, (0.0, 0.9), 1)
    params = cfg.network_params()
    assert params["generator"]["optimizer"]["args"] == {"lr": 1e-4, "betas": (0.0, 0.9)}
    assert params["discriminator"]["optimizer"]["args"] == {"lr": 4e-4, "betas": (0.0, 0.9)}


def test_tutorial_preset_keeps_the_tutorial_widths(tmp_path):
    cfg = get_config("sagan_tutorial_64")
    g = cfg.network_params()["generator"]["name"](**cfg.generator_args())
    d = cfg.network_params()["discriminator"]["name"](**cfg.discriminator_args())
    g_widths = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    d_widths = [m.out_channels for m in d.modules() if type(m).__name__.endswith("Conv2d") and m.kernel_size == (4, 4)]
    assert g_widths == [256, 128, 64, 32, 3]  # tutorial: 8d, 4d, 2d, d, 3 with d = 32
    assert d_widths == [32, 64, 128, 256, 1]
    attn = [(m.input_dims, m.layout) for m in g.modules() if isinstance(m, SelfAttention2d)]
    assert attn == [(64, "official"), (32, "official")]
    assert isinstance(d.last_nonlinearity, torch.nn.Tanh)
    assert [type(x).__name__ for x in cfg.losses()] == [
        "WassersteinGeneratorLoss",
        "WassersteinDiscriminatorLoss",
    ]
    assert cfg.losses()[1].clip == (-0.01, 0.01)


def test_overrides_win_and_are_validated():
    cfg = get_config("sagan_celeba_64", step_channels=32, loss="least_squares")
    assert (cfg.step_channels, cfg.loss) == (32, "least_squares")
    assert get_config("sagan_celeba_64").step_channels == 64  # the registry is not changed
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['step_chanels'\]"):
        get_config("sagan_celeba_64", step_chanels=32)
    with pytest.raises(ValueError, match="image_size must be a power of 2"):
        get_config("sagan_celeba_64", image_size=48)
    with pytest.raises(ValueError, match=r"loss must be one of \['hinge'"):
        get_config("sagan_celeba_64", loss="nonsense")
    with pytest.raises(ValueError, match=r"g_attn_resolutions contains 64"):
        get_config("sagan_32", g_attn_resolutions=(64,))
    with pytest.raises(ValueError, match="betas must be two numbers"):
        get_config("sagan_32", betas=(0.5,))
    with pytest.raises(ValueError, match="ncritic must be a non-zero integer"):
        get_config("sagan_32", ncritic=0)


def test_integer_betas_become_floats():
    """torch's Adam rejects betas=(0, 0.9); configs store (0.0, 0.9)."""
    cfg = get_config("sagan_32", betas=(0, 0.9))
    assert cfg.betas == (0.0, 0.9) and all(type(b) is float for b in cfg.betas)


@pytest.mark.parametrize("label_type", ["generated", "required"])
@pytest.mark.parametrize("name", ["sagan_cond_digits_32", "sagan_cond_imagenet_128"])
def test_conditional_presets_train_with_each_label_type(name, label_type, tmp_path):
    cfg = get_config(name, step_channels=8, sample_size=4, label_type=label_type)
    seen = []

    class Recorder(cfg.network_params()["generator"]["name"]):
        def forward(self, z, labels=None, feature_matching=False):
            seen.append(labels)
            return super().forward(z, labels, feature_matching)

    params = cfg.network_params()
    params["generator"]["name"] = Recorder
    trainer = Trainer(params, cfg.losses(), device=torch.device("cpu"), checkpoints=str(tmp_path / "c" / "gan"),
                      recon=str(tmp_path / "i"), log_dir=str(tmp_path / "l"), **cfg.trainer_kwargs())
    assert (trainer.generator.label_type, trainer.discriminator.label_type) == (label_type, "required")
    assert trainer.generator.num_classes == trainer.discriminator.num_classes == cfg.num_classes
    trainer.real_inputs = torch.rand(2, cfg.image_channels, cfg.image_size, cfg.image_size) * 2 - 1
    trainer.labels = torch.tensor([3, 1])
    trainer.batch_size = 2
    lgen, ldis, _, _ = trainer.train_iter()
    assert torch.isfinite(torch.tensor([lgen, ldis])).all()
    assert len(seen) == 2 and all(y is not None and y.shape == (2,) for y in seen)
    if label_type == "required":
        assert all(torch.equal(y, trainer.labels) for y in seen)  # fakes of the real batch's classes


def test_ema_and_diffaugment_reach_the_nets(tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, ema_decay=0.99, ema_start=5,
                     diffaugment="translation,color")
    trainer, _ = _one_iteration(cfg, tmp_path)
    assert (trainer.generator.ema.decay, trainer.generator.ema.start) == (0.99, 5)
    assert int(trainer.generator.ema.steps) == 1  # one G step in the iteration
    assert trainer.discriminator.augment.policy == "color,translation"
    plain = get_config("sagan_32")
    assert "ema_decay" not in plain.generator_args() and "diffaugment" not in plain.discriminator_args()


@pytest.mark.parametrize("overrides, match", [
    ({"num_classes": -1}, "num_classes must be 0"),
    ({"num_classes": 10, "label_type": "none"}, "label_type must be one of"),
    ({"ema_decay": 1.5}, r"decay must be a number in \[0, 1\)"),
    ({"ema_decay": 0.9, "ema_start": -3}, "start must be a non-negative"),
    ({"diffaugment": "color,flip"}, "unknown DiffAugment transformation"),
])
def test_bad_conditional_ema_and_augment_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_config("sagan_32", **overrides)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown config 'sagan_64'; known configs: .*sagan_celeba_64"):
        get_config("sagan_64")


def test_list_configs_filters_with_wildcards():
    assert "sagan_celeba_64" in list_configs("sagan_*")
    assert list_configs("*_64") == ["sagan_celeba_64", "sagan_tutorial_64"]
    assert list_configs("sagan_?2*") == ["sagan_128", "sagan_32"]
    assert list_configs("nothing*") == []


def test_register_by_decorator_and_reject_duplicates(monkeypatch):
    monkeypatch.setattr(configs_module, "_REGISTRY", dict(configs_module._REGISTRY))

    @register_config
    def my_sagan_16() -> SAGANConfig:
        """A tiny test recipe."""
        return SAGANConfig(image_size=16, g_attn_resolutions=(8,), d_attn_resolutions=(8,))

    assert "my_sagan_16" in list_configs()
    assert get_config("my_sagan_16").source == "A tiny test recipe."
    with pytest.raises(ValueError, match="'my_sagan_16' is already registered"):
        register_config(my_sagan_16)
