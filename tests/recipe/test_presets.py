import pytest
import torch

from torchgan_sagan import get_config, list_configs, make_trainer
from torchgan_sagan.layers import SelfAttention2d


@pytest.mark.parametrize("name", list_configs())
def test_every_config_runs_one_trainer_iteration(name, tmp_path, one_iteration):
    cfg = get_config(name, step_channels=8, sample_size=4)
    assert cfg.source, f"{name} documents no source"
    trainer, before = one_iteration(cfg, tmp_path)
    assert trainer.generator.out_size == cfg.image_size
    after = list(trainer.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "G did not train"


def test_celeba_preset_is_the_paper_recipe_with_the_best_measured_loss_and_learning_rates():
    cfg = get_config("sagan_celeba_64")
    assert (cfg.loss, cfg.g_lr, cfg.d_lr, cfg.betas, cfg.ncritic) == ("least_squares", 4e-4, 4e-4, (0.0, 0.9), 1)
    assert (cfg.g_attn_resolutions, cfg.d_attn_resolutions, cfg.attn_layout) == ((32,), (32,), "official")
    params = cfg.network_params()
    assert params["generator"]["optimizer"]["args"] == {"lr": 4e-4, "betas": (0.0, 0.9)}
    assert params["discriminator"]["optimizer"]["args"] == {"lr": 4e-4, "betas": (0.0, 0.9)}


@pytest.mark.parametrize("name", ["sagan_32", "sagan_faces_32", "sagan_celeba_64"])
def test_default_recipes_are_the_best_measured(name):
    cfg = get_config(name)
    assert (cfg.loss, cfg.g_lr, cfg.d_lr) == ("least_squares", 4e-4, 4e-4)
    assert [type(loss).__module__ for loss in cfg.losses()] == ["torchgan_sagan.losses"] * 2  # no host syncs


def test_conditional_digits_keep_the_loss_they_were_measured_with():
    cfg = get_config("sagan_cond_digits_32")
    assert (cfg.loss, cfg.g_lr, cfg.d_lr) == ("hinge", 4e-4, 4e-4)


@pytest.mark.parametrize("name", ["sagan_128", "sagan_cond_imagenet_128", "sagan_resnet_imagenet_128",
                                  "sagan_resnet_celeba_64"])
def test_paper_recipes_keep_the_papers_ttur(name):
    cfg = get_config(name)
    assert (cfg.loss, cfg.g_lr, cfg.d_lr) == ("hinge", 1e-4, 4e-4)


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
    assert (cfg.g_lr, cfg.d_lr, cfg.betas) == (8e-4, 4e-4, (0.0, 0.999))  # the recipe search's best


def test_tutorial_hinge_preset_changes_only_the_loss_and_ds_output():
    tutorial, hinge = get_config("sagan_tutorial_64"), get_config("sagan_tutorial_hinge_64")
    assert (hinge.loss, hinge.d_tanh) == ("hinge", False)
    assert hinge.replace(loss="wasserstein", d_tanh=True, source=tutorial.source) == tutorial
    d = hinge.network_params()["discriminator"]["name"](**hinge.discriminator_args())
    assert isinstance(d.last_nonlinearity, torch.nn.Identity)  # raw scores, as the hinge margins need
    assert [type(x).__name__ for x in hinge.losses()] == ["HingeGeneratorLoss", "HingeDiscriminatorLoss"]


@pytest.mark.parametrize("label_type", ["generated", "required"])
@pytest.mark.parametrize("name", ["sagan_cond_digits_32", "sagan_cond_imagenet_128"])
def test_conditional_presets_train_with_each_label_type(name, label_type, tmp_path, one_iteration):
    cfg = get_config(name, step_channels=8, sample_size=4, label_type=label_type)
    seen = []

    class Recorder(cfg.network_params()["generator"]["name"]):
        def forward(self, z, labels=None, feature_matching=False):
            seen.append(labels)
            return super().forward(z, labels, feature_matching)

    params = cfg.network_params()
    params["generator"]["name"] = Recorder
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", network_params=params)
    assert (trainer.generator.label_type, trainer.discriminator.label_type) == (label_type, "required")
    assert trainer.generator.num_classes == trainer.discriminator.num_classes == cfg.num_classes
    labels = torch.tensor([3, 1])
    trainer, _ = one_iteration(cfg, tmp_path, trainer=trainer, labels=labels)
    assert len(seen) == 2 and all(y is not None and y.shape == (2,) for y in seen)
    if label_type == "required":
        assert all(torch.equal(y, labels) for y in seen)  # fakes of the real batch's classes
