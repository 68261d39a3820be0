"""The paper's residual nets (torchgan_sagan.models.resnet)."""

import pytest
import torch

from torchgan_sagan.layers import SelfAttention2d, spectral_norm_of
from torchgan_sagan.models import SAGANResNetDiscriminator, SAGANResNetGenerator
from torchgan_sagan.models.resnet import DBlock, GBlock


def _attention_inputs(net, run):
    """Resolutions of the feature maps entering each attention block."""
    seen = []
    for m in net.modules():
        if isinstance(m, SelfAttention2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-1]))
    run()
    return seen


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
def test_shapes_and_default_attention_at_every_size(size):
    width = 4 if size == 256 else 8
    g, d = SAGANResNetGenerator(16, size, 3, width), SAGANResNetDiscriminator(size, 3, width)
    expected = min(32, size // 2)
    images = []
    assert _attention_inputs(g, lambda: images.append(g(torch.randn(2, 16)))) == [expected]
    assert images[0].shape == (2, 3, size, size) and images[0].abs().max() <= 1
    assert _attention_inputs(d, lambda: images.append(d(images[0]))) == [expected]
    assert images[1].shape == (2,)


def test_the_official_128_layout():
    g, d = SAGANResNetGenerator(128, 128, 3, 8), SAGANResNetDiscriminator(128, 3, 8)
    g_blocks = [m for m in g.model if isinstance(m, GBlock)]
    assert [b.conv2.out_channels for b in g_blocks] == [128, 64, 32, 16, 8]  # 16d, 8d, 4d, 2d, d
    kinds = [type(m).__name__ for m in g.model]
    assert kinds.index("SelfAttention2d") == kinds.index("GBlock") + 3  # after block 3 (32x32)
    d_blocks = [m for m in d.model if isinstance(m, DBlock)]
    assert [b.conv2.out_channels for b in d_blocks] == [8, 16, 32, 64, 128, 128]  # d ... 16d, 16d
    assert d_blocks[0].optimized and not d_blocks[-1].pool.__class__.__name__ == "AvgPool2d"
    kinds = [type(m).__name__ for m in d.model]
    assert kinds.index("SelfAttention2d") == 2  # after block 2 (32x32)


def test_every_weight_is_spectrally_normalized():
    g = SAGANResNetGenerator(16, 32, 1, 8, num_classes=3)
    d = SAGANResNetDiscriminator(32, 1, 8, num_classes=3)
    for net in (g, d):
        layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
        assert layers and all(spectral_norm_of(m) is not None for m in layers)
        for m in layers:
            w = m.weight.detach().flatten(1) if m.weight.dim() > 1 else m.weight.detach()[None]
            assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, rel=0.05)


def test_residual_shortcuts():
    x = torch.randn(2, 8, 4, 4)
    up = GBlock(8, 4, torch.nn.BatchNorm2d, torch.nn.ReLU())
    assert up(x).shape == (2, 4, 8, 8) and isinstance(up.shortcut, torch.nn.Conv2d)
    down = DBlock(8, 16, torch.nn.ReLU())
    assert down(x).shape == (2, 16, 2, 2)
    same = DBlock(8, 8, torch.nn.ReLU(), downsample=False)
    assert same(x).shape == (2, 8, 4, 4) and isinstance(same.shortcut, torch.nn.Identity)
    with torch.no_grad():  # with the residual branch at zero, the block is its shortcut
        same.conv2.weight.zero_()
        same.conv2.bias.zero_()
    assert torch.allclose(same(x), x)


def test_conditional_plumbing():
    torch.manual_seed(0)
    g = SAGANResNetGenerator(16, 32, 1, 8, num_classes=4).eval()
    d = SAGANResNetDiscriminator(32, 1, 8, num_classes=4).eval()
    with torch.no_grad():
        for m in g.modules():
            if type(m).__name__ == "ConditionalBatchNorm2d":
                m.gain.normal_()  # classes differ from the start
        z = torch.randn(1, 16).repeat(2, 1)
        images = g(z, torch.tensor([0, 3]))
        assert not torch.allclose(images[0], images[1])
        d.embed.parametrizations.weight.original.normal_()
        x = images[:1].repeat(2, 1, 1, 1)
        logits = d(x, torch.tensor([0, 3]))
        assert not torch.allclose(logits[0], logits[1])  # the projection term
        assert d(x, feature_matching=True, labels=torch.tensor([0, 3])).shape == (2, 32, 4, 4)  # 4d at 32x32


@pytest.mark.parametrize("build, match", [
    (lambda: SAGANResNetGenerator(16, 32, 1, 8, batchnorm=False), "keep batchnorm=True"),
    (lambda: SAGANResNetDiscriminator(32, 1, 8, batchnorm=True), "keep batchnorm=False"),
    (lambda: SAGANResNetGenerator(16, 50, 1, 8), "out_size must be base x 2.*nearest: 48 or 56"),
    (lambda: SAGANResNetGenerator(16, 32, 1, 8, attn_resolutions=(32,)), "contains 32"),
    (lambda: SAGANResNetDiscriminator(32, 1, 2, attn_resolutions=(16,)), "query/key width"),
])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("loss", ["hinge", "minimax", "least_squares", "wasserstein", "wasserstein_gp", "dragan",
                                  "feature_matching"])
def test_every_loss_trains_the_residual_nets(loss, tmp_path, one_iteration):
    from torchgan_sagan import get_config

    cfg = get_config("sagan_32", backbone="resnet", image_channels=1, step_channels=8, d_leaky_slope=None, loss=loss)
    trainer, before = one_iteration(cfg, tmp_path)
    assert type(trainer.discriminator).__name__ == "SAGANResNetDiscriminator"
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))


def test_speed_options_keep_the_residual_nets_working():
    torch.manual_seed(0)
    g = SAGANResNetGenerator(16, 32, 1, 8, channels_last=True, amp="bf16")
    d = SAGANResNetDiscriminator(32, 1, 8, channels_last=True, amp="bf16", num_classes=3)
    x = g(torch.randn(2, 16))
    assert x.dtype == torch.float32 and d(x, torch.tensor([0, 2])).dtype == torch.float32
