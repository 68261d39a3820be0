"""Image sizes of the form base x 2**k (28 = 7 x 4, 48 = 6 x 8, 96 = 6 x 16), not only
powers of two: G starts at base x base and doubles, D halves down to it."""

import pytest
import torch
from torch.utils.data import DataLoader

from torchgan_sagan import get_config, make_trainer
from torchgan_sagan.checks import IMAGE_SIZES, check_image_size, image_base
from torchgan_sagan.data import embedded_digits
from torchgan_sagan.layers import SelfAttention2d
from torchgan_sagan.models import SAGANDiscriminator, SAGANGenerator
from torchgan_sagan.models.common import default_attn_resolutions, feature_widths, inner_resolutions
from torchgan_sagan.models.torchgan_tutorial import TutorialGenerator


def test_sizes_and_their_bases():
    assert {28, 48, 96, 16, 32, 64, 128, 256} <= set(IMAGE_SIZES)
    assert [image_base(s) for s in (28, 48, 96, 64, 20, 256)] == [7, 6, 6, 4, 5, 4]
    assert inner_resolutions(28) == [7, 14] and inner_resolutions(96) == [6, 12, 24, 48]
    assert feature_widths(28, 8) == {7: 16, 14: 8}
    assert default_attn_resolutions(28) == (14,) and default_attn_resolutions(96) == (24,)
    assert default_attn_resolutions(64) == (32,) and default_attn_resolutions(16) == (8,)


@pytest.mark.parametrize("size, nearest", [(30, "28 or 32"), (100, "96 or 112"), (8, "16"), (300, "256")])
def test_an_impossible_size_names_the_nearest_valid_ones(size, nearest):
    with pytest.raises(ValueError, match=f"got {size}; nearest: {nearest}$"):
        check_image_size("image_size", size)
    with pytest.raises(ValueError, match="nearest: 28 or 32"):
        get_config("sagan_32", image_size=30)


def test_torchgans_tutorial_network_keeps_its_power_of_two_check():
    with pytest.raises(ValueError, match="power of 2.*nearest: 16 or 32"):
        TutorialGenerator(out_size=28)


@pytest.mark.parametrize("backbone", ["dcgan", "resnet"])
@pytest.mark.parametrize("size", [28, 48, 96])
def test_both_backbones_build_every_size(size, backbone):
    cfg = get_config("sagan_32", image_size=size, image_channels=1, step_channels=8, backbone=backbone)
    params = cfg.network_params()
    g = params["generator"]["name"](**params["generator"]["args"])
    d = params["discriminator"]["name"](**params["discriminator"]["args"])
    x = g(torch.randn(2, cfg.encoding_dims))
    assert x.shape == (2, 1, size, size)
    assert d(x).shape == (2,)
    assert cfg.g_attn_resolutions == cfg.d_attn_resolutions == default_attn_resolutions(size)


def test_attention_resolutions_are_checked_against_the_sizes_the_nets_have():
    with pytest.raises(ValueError, match=r"have resolutions \[7, 14\]; choose from those"):
        get_config("sagan_32", image_size=28, g_attn_resolutions=(16,))
    with pytest.raises(ValueError, match=r"have resolutions \[6, 12, 24\]"):
        SAGANDiscriminator(48, 1, 8, attn_resolutions=(8,))
    # attention placed by hand for the old size stays where it was asked for
    assert get_config("sagan_tutorial_64", image_size=128).g_attn_resolutions == (16, 32)


def _attention_sizes(net):
    sizes = []
    for m in net.modules():
        if isinstance(m, SelfAttention2d):
            m.register_forward_hook(lambda module, args, out: sizes.append(tuple(args[0].shape[-2:])))
    return sizes


@pytest.mark.parametrize("attention", [None, (7,)])
def test_sagan_32_at_28_trains_on_digits_through_torchgans_trainer(attention, tmp_path):
    """MNIST's native size (the embedded digits at 28 stand in for it), attention at
    14x14 (the default there) or at 7x7, an odd size whose keys pool with ceil_mode."""
    extra = {} if attention is None else {"g_attn_resolutions": attention, "d_attn_resolutions": attention}
    cfg = get_config("sagan_32", image_size=28, image_channels=1, step_channels=8, batch_size=8, epochs=1,
                     sample_size=4, **extra)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    images = embedded_digits(28).tensors[0][:16]
    assert images.shape[1:] == (1, 28, 28)
    seen = {"G": _attention_sizes(trainer.generator), "D": _attention_sizes(trainer.discriminator)}
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.train(DataLoader(images, batch_size=8))
    assert trainer.generator(torch.randn(3, cfg.encoding_dims)).shape == (3, 1, 28, 28)
    expected = (14, 14) if attention is None else (7, 7)
    assert seen["G"] and set(seen["G"]) == {expected} and set(seen["D"]) == {expected}
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())


def test_the_mnist_preset():
    cfg = get_config("sagan_mnist_28")
    assert (cfg.image_size, cfg.image_channels, cfg.g_attn_resolutions, cfg.d_attn_resolutions) == (28, 1, (14,), (14,))
    g = SAGANGenerator(cfg.encoding_dims, 28, 1, 8)
    assert g(torch.randn(2, cfg.encoding_dims)).shape == (2, 1, 28, 28)
