import argparse
import dataclasses

import pytest

from torchgan_sagan import SAGANConfig, get_config
from torchgan_sagan.recipe.cli import TAGS, add_config_flags, config_overrides, parse_spec


def _parser(**kwargs):
    p = argparse.ArgumentParser()
    add_config_flags(p, **kwargs)
    return p


def test_every_config_field_has_a_flag():
    p = _parser()
    dests = {a.dest for a in p._actions}
    assert {f.name for f in dataclasses.fields(SAGANConfig)} <= dests


def test_flags_are_typed_from_the_fields():
    args = _parser().parse_args([
        "--step-channels", "8", "--g-lr", "2e-4", "--betas", "0.5", "0.999", "--attn-fused", "off",
        "--g-attn-resolutions", "8", "16", "--d-attn-resolutions", "--ema", "0.99", "--diffaugment",
        "--compile", "--amp", "bf16", "--loss", "minimax"])
    overrides = config_overrides(args)
    assert overrides == {"step_channels": 8, "g_lr": 2e-4, "betas": [0.5, 0.999], "attn_fused": "off",
                         "g_attn_resolutions": [8, 16], "d_attn_resolutions": [], "ema_decay": 0.99,
                         "diffaugment": "color,translation,cutout", "compile": True, "amp": "bf16",
                         "loss": "minimax"}
    cfg = get_config("sagan_32", **overrides)
    assert (cfg.betas, cfg.g_attn_resolutions, cfg.d_attn_resolutions) == ((0.5, 0.999), (8, 16), ())


def test_flags_not_given_keep_the_config():
    assert config_overrides(_parser().parse_args([])) == {}
    assert config_overrides(_parser().parse_args(["--compile", "eager"])) == {"compile": "eager"}


def test_excluded_fields_have_no_flag_and_unknown_exclusions_are_refused():
    p = _parser(exclude=["source", "num_classes"])
    dests = {a.dest for a in p._actions}
    assert "source" not in dests and "num_classes" not in dests and "epochs" in dests
    with pytest.raises(ValueError, match=r"exclude names no config field: \['nonsense'\]"):
        _parser(exclude=["nonsense"])


def test_bad_choices_exit_like_argparse(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--attn-layout", "mine"])
    assert "invalid choice: 'mine'" in capsys.readouterr().err


def test_specs_with_tags():
    assert parse_spec("hinge") == ("hinge", {})
    assert parse_spec("hinge+cl+dropin") == ("hinge", {"channels_last": True, "attn_layout": "torchgan"})
    assert parse_spec("x+unfused+bf16+compile+diffaug", ["x"]) == (
        "x", {"attn_fused": "off", "amp": "bf16", "compile": True, "diffaugment": "color,translation,cutout"})
    extra = {"ema": {"ema_decay": 0.995, "ema_start": 200}, "cl": {"channels_last": False}}
    assert parse_spec("hinge+ema+cl", extra_tags=extra) == (
        "hinge", {"ema_decay": 0.995, "ema_start": 200, "channels_last": False})
    assert parse_spec("a+official+dropin")[1] == {"attn_layout": "torchgan"}  # later tags win


def test_bad_specs_name_what_is_known():
    with pytest.raises(ValueError, match=r"unknown name 'gan' in 'gan\+cl'; use one of \['hinge'\]"):
        parse_spec("gan+cl", ["hinge"])
    with pytest.raises(ValueError, match=r"unknown tag \+fast in 'hinge\+fast'; use \["):
        parse_spec("hinge+fast")


def test_tags_come_from_the_fields():
    assert TAGS["cl"] == {"channels_last": True} and TAGS["dropin"] == {"attn_layout": "torchgan"}
    for tag, fields in TAGS.items():
        get_config("sagan_32", **fields)  # every tag makes a valid config
