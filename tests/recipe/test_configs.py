import dataclasses

import pytest

from torchgan_sagan import LOSSES, get_config
from torchgan_sagan.recipe import configs as configs_module
from torchgan_sagan.layers import SelfAttention2d


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_the_sagan_nets(loss, tmp_path, one_iteration):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, loss=loss)
    trainer, _ = one_iteration(cfg, tmp_path)
    fused = [m.fused for m in trainer.discriminator.modules() if isinstance(m, SelfAttention2d)]
    assert fused == ["off" if loss in configs_module.GRADIENT_PENALTY_LOSSES else "auto"]


def test_integer_betas_become_floats():
    """torch's Adam rejects betas=(0, 0.9); configs store (0.0, 0.9)."""
    cfg = get_config("sagan_32", betas=(0, 0.9))
    assert cfg.betas == (0.0, 0.9) and all(type(b) is float for b in cfg.betas)


def test_attention_placement_defaults_to_the_nets_and_is_normalized():
    assert get_config("sagan_32").g_attn_resolutions == (16,)  # the nets' default placement
    cfg = get_config("sagan_celeba_64", g_attn_resolutions=[32, 16, 32], d_attn_resolutions=8)
    assert (cfg.g_attn_resolutions, cfg.d_attn_resolutions) == ((16, 32), (8,))


def test_ema_and_diffaugment_reach_the_nets(tmp_path, one_iteration):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, ema_decay=0.99, ema_start=5,
                     diffaugment="translation,color")
    trainer, _ = one_iteration(cfg, tmp_path)
    assert (trainer.generator.ema.decay, trainer.generator.ema.start) == (0.99, 5)
    assert int(trainer.generator.ema.steps) == 1  # one G step in the iteration
    assert trainer.discriminator.augment.policy == "color,translation"
    plain = get_config("sagan_32")
    assert "ema_decay" not in plain.generator_args() and "diffaugment" not in plain.discriminator_args()


def test_options_map_onto_the_nets_that_take_them():
    cfg = get_config("sagan_32", channels_last=True, attn_layout="torchgan", ema_decay=0.9,
                     diffaugment="color", g_attn_resolutions=(8,), d_attn_resolutions=(4, 16))
    g, d = cfg.generator_args(), cfg.discriminator_args()
    assert (g["channels_last"], g["attn_layout"], g["ema_decay"], g["attn_resolutions"]) == \
        (True, "torchgan", 0.9, (8,))
    assert (d["channels_last"], d["attn_layout"], d["diffaugment"], d["attn_resolutions"]) == \
        (True, "torchgan", "color", (4, 16))
    assert "diffaugment" not in g and "ema_decay" not in d


def test_replace_validates():
    cfg = get_config("sagan_32")
    assert cfg.replace(step_channels=8).step_channels == 8
    with pytest.raises(ValueError, match="step_channels must be a positive integer"):
        cfg.replace(step_channels=0)
    assert dataclasses.is_dataclass(cfg)


@pytest.mark.parametrize("overrides, match", [
    ({"num_classes": -1}, "num_classes must be 0"),
    ({"num_classes": 10, "label_type": "none"}, "label_type must be one of"),
    ({"ema_decay": 1.5}, r"decay must be a number in \[0, 1\)"),
    ({"ema_decay": 0.9, "ema_start": -3}, "start must be a non-negative"),
    ({"diffaugment": "color,flip"}, "unknown DiffAugment transformation"),
    ({"amp": "fp16"}, "amp must be None or one of"),
    ({"attn_layout": "mine"}, "attn_layout must be one of"),
    ({"g_attn_resolutions": ("16",)}, "g_attn_resolutions must be feature-map resolutions"),
    ({"g_lr": 0}, "g_lr must be positive"),
])
def test_bad_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_config("sagan_32", **overrides)


@pytest.mark.parametrize("loss", sorted(configs_module.GRADIENT_PENALTY_LOSSES))
def test_compile_with_a_gradient_penalty_is_refused_at_config_time(loss):
    with pytest.raises(ValueError, match="torch.compile does not support double backward"):
        get_config("sagan_32", loss=loss, compile=True)
    get_config("sagan_32", loss="hinge", compile=True)  # fine without a penalty


def test_every_field_a_resume_may_change_is_a_field_and_changes():
    assert configs_module.RESUME_MAY_CHANGE <= {f.name for f in dataclasses.fields(configs_module.SAGANConfig)}
    cfg = get_config("sagan_faces_32")
    resumed, changes = cfg.resumed_with(compile=True, channels_last=True, keep_every="6h")
    assert changes == {"compile": (False, True), "channels_last": (False, True), "keep_every": (None, "6h")}
