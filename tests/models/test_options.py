"""Every option is defined once (torchgan_sagan.models.options) and reaches every place
derived from it: the nets' signatures and docstrings, the config's fields and its
mapping onto the nets."""

import dataclasses
import inspect

import pytest
import torch

from torchgan_sagan import SAGANConfig, SAGANDiscriminator, SAGANGenerator
from torchgan_sagan.models.options import (
    OPTION_GROUPS,
    AttentionOptions,
    AugmentOptions,
    EMAOptions,
    SpeedOptions,
    net_options,
)

NETS = {"G": SAGANGenerator, "D": SAGANDiscriminator}
ALL_OPTIONS = [(group, f) for group in OPTION_GROUPS for f in dataclasses.fields(group)]


def _id(param):
    return param.name if isinstance(param, dataclasses.Field) else param.__name__


#: A value other than the default for each option (the test fails for a new option
#: until it has one here: say how it differs from the default).
NON_DEFAULT = {
    "attn_resolutions": (8,),
    "attn_layout": "torchgan",
    "attn_fused": "off",
    "channels_last": True,
    "compile": "eager",
    "amp": "bf16",
    "ema_decay": 0.9,
    "ema_start": 3,
    "ema_statistics_batches": 16,
    "diffaugment": "color",
}


@pytest.mark.parametrize("group, f", ALL_OPTIONS, ids=_id)
def test_every_option_reaches_the_nets_and_the_config(group, f):
    assert f.metadata["help"], f"{f.name} has no help text"
    config_names = {fl.name for fl in dataclasses.fields(SAGANConfig)}
    for net, cls in NETS.items():
        params = inspect.signature(cls).parameters
        if net in group.NETS:
            assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY
            assert params[f.name].default == f.default
            assert f"{f.name}: " in cls.__doc__
        else:
            assert f.name not in params
    if f.metadata["per_net"]:
        assert {"g_" + f.name, "d_" + f.name} <= config_names
    else:
        assert f.name in config_names
    # A non-default value in the config arrives as the nets' argument.
    value = NON_DEFAULT[f.name]
    key = {net: ("g_" if net == "G" else "d_") + f.name if f.metadata["per_net"] else f.name for net in "GD"}
    for net in group.NETS:
        cfg = SAGANConfig(image_size=32, step_channels=8, **{key[net]: value})
        assert net_options(cfg, net)[f.name] == value


def test_nets_are_built_with_each_option():
    g = SAGANGenerator(16, 32, 1, 8, attn_resolutions=(8,), attn_layout="torchgan", attn_fused=False,
                       channels_last=True, ema_decay=0.9, ema_start=3)
    assert g.attn_resolutions == (8,) and g.channels_last and g.amp is None
    assert (g.ema.decay, g.ema.start) == (0.9, 3)
    assert isinstance(g.attention, AttentionOptions) and isinstance(g.speed, SpeedOptions)
    d = SAGANDiscriminator(32, 1, 8, diffaugment="color", amp="bf16")
    assert d.augment.policy == "color" and d.amp == "bf16"
    assert d(torch.rand(2, 1, 32, 32) * 2 - 1).dtype == torch.float32


def test_an_option_of_the_other_net_is_refused_by_name():
    with pytest.raises(TypeError, match=r"SAGANGenerator got unexpected argument\(s\) \['diffaugment'\]; "
                                        r"its options are \['attn_resolutions'"):
        SAGANGenerator(diffaugment="color")
    with pytest.raises(TypeError, match=r"SAGANDiscriminator got unexpected argument\(s\) \['ema_decay'\]"):
        SAGANDiscriminator(ema_decay=0.9)


@pytest.mark.parametrize("group, kwargs, match", [
    (AttentionOptions, {"attn_layout": "x"}, "attn_layout must be one of"),
    (AttentionOptions, {"attn_resolutions": "16"}, "attn_resolutions must be feature-map resolutions"),
    (SpeedOptions, {"amp": "fp16"}, "amp must be None or one of"),
    (EMAOptions, {"ema_decay": 1.0}, "EMA decay must be a number in"),
    (EMAOptions, {"ema_start": -1}, "EMA start must be a non-negative"),
    (AugmentOptions, {"diffaugment": "flip"}, "unknown DiffAugment transformation"),
])
def test_groups_validate_their_options(group, kwargs, match):
    with pytest.raises(ValueError, match=match):
        group(**kwargs)


def test_groups_take_their_options_out_of_keyword_arguments():
    kwargs = {"ema_decay": 0.5, "channels_last": True, "other": 1}
    assert EMAOptions.take(kwargs) == EMAOptions(ema_decay=0.5)
    assert kwargs == {"channels_last": True, "other": 1}
