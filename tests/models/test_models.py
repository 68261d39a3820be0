import pytest
import torch
import torch.nn as nn
from torchgan.models import Discriminator, Generator

from torchgan_sagan import SAGANDiscriminator, SAGANGenerator, SelfAttention2d
from torchgan_sagan.layers import spectral_norm_of
from torchgan_sagan.models import default_attn_resolutions

SIZES = [16, 32, 64, 128, 256]


def _attention_resolutions(net, x, forward):
    """Resolutions at which each attention block of ``net`` runs during ``forward(x)``."""
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append(args[0].size(-1)))
        for m in net.modules()
        if isinstance(m, SelfAttention2d)
    ]
    forward(x)
    for h in hooks:
        h.remove()
    return sorted(seen)


@pytest.mark.parametrize("size", SIZES)
def test_shapes_for_every_size(size):
    g = SAGANGenerator(encoding_dims=8, out_size=size, out_channels=3, step_channels=8)
    d = SAGANDiscriminator(in_size=size, in_channels=3, step_channels=8)
    assert isinstance(g, Generator) and isinstance(d, Discriminator)
    with torch.no_grad():
        images = g(torch.randn(2, 8))
        logits = d(images)
    assert images.shape == (2, 3, size, size)
    assert logits.shape == (2,)
    assert _attention_resolutions(g, torch.randn(2, 8), g) == [min(32, size // 2)]


@pytest.mark.parametrize("size", [32, 64])
def test_attention_at_the_resolutions_asked(size):
    asked = (4, 8, size // 2)
    g = SAGANGenerator(8, size, 1, 8, attn_resolutions=asked)
    d = SAGANDiscriminator(size, 1, 8, attn_resolutions=asked)
    with torch.no_grad():
        assert _attention_resolutions(g, torch.randn(2, 8), g) == sorted(asked)
        assert _attention_resolutions(d, torch.randn(2, 1, size, size), d) == sorted(asked)
    assert SAGANGenerator(8, size, 1, 8, attn_resolutions=()).attn_resolutions == ()


def test_attention_maps_are_returned_per_resolution():
    g = SAGANGenerator(8, 32, 3, 8, attn_resolutions=(8, 16))
    d = SAGANDiscriminator(32, 3, 8, attn_resolutions=(16,))
    with torch.no_grad():
        images, maps = g.attention_maps(torch.randn(2, 8))
        logits, d_maps = d.attention_maps(images)
    assert images.shape == (2, 3, 32, 32) and logits.shape == (2,)
    assert maps[8].shape == (2, 64, 16) and maps[16].shape == (2, 256, 64)
    assert d_maps[16].shape == (2, 256, 64)
    for attn in list(maps.values()) + list(d_maps.values()):
        assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)


def test_discriminator_returns_raw_logits():
    d = SAGANDiscriminator(16, 1, 8)
    assert not any(isinstance(m, (nn.Tanh, nn.Sigmoid)) for m in d.modules())
    with torch.no_grad():
        # A large bias on the last layer passes straight through: nothing bounds it.
        d.disc[0].bias.fill_(25.0)
        logits = d(torch.randn(4, 1, 16, 16))
    assert (logits.abs() > 1).all()


def test_generator_uses_batchnorm_and_ends_in_tanh():
    g = SAGANGenerator(8, 16, 3, 8)
    assert any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert isinstance(g.model[-1], nn.Tanh)
    out = g(torch.randn(4, 8) * 100)
    assert out.abs().max() <= 1


def test_every_conv_is_spectrally_normalized():
    g = SAGANGenerator(8, 32, 3, 8, attn_resolutions=(8, 16))
    d = SAGANDiscriminator(32, 3, 8, attn_resolutions=(8, 16))
    for net in (g, d):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert len(convs) > 5
        assert all(spectral_norm_of(m) is not None for m in convs)


def test_sampler_feeds_the_generator():
    g = SAGANGenerator(encoding_dims=12, out_size=16, step_channels=8)
    inputs = g.sampler(5, torch.device("cpu"))
    assert inputs[0].shape == (5, 12)
    assert g(*inputs).shape == (5, 3, 16, 16)


def test_weight_initializer_reinitializes_normalized_weights():
    g = SAGANGenerator(8, 16, 3, 8)
    conv = g.model[0]
    original = conv.parametrizations.weight.original
    with torch.no_grad():
        original.fill_(0.5)
    g._weight_initializer()
    assert conv.parametrizations.weight.original is original  # same parameter, optimizers keep it
    assert original.std() > 0
    w = conv.weight  # a transposed convolution: normalized over its input channels (dim 0)
    assert torch.linalg.matrix_norm(w.reshape(w.size(0), -1), ord=2).item() == pytest.approx(1, abs=1e-2)


def test_discriminator_feature_matching_returns_features():
    d = SAGANDiscriminator(32, 3, 8)
    assert d(torch.randn(2, 3, 32, 32), feature_matching=True).shape == (2, 32, 4, 4)


def test_default_attention_resolution():
    assert [default_attn_resolutions(s) for s in SIZES] == [(8,), (16,), (32,), (32,), (32,)]


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (SAGANGenerator, {"out_size": 50}, r"out_size must be base x 2\*\*k .* from 16 to 256 .*nearest: 48 or 56"),
        (SAGANGenerator, {"out_size": 8}, r"out_size must be base x 2.*nearest: 16$"),
        (SAGANGenerator, {"out_size": 512}, r"out_size must be base x 2.*nearest: 256$"),
        (SAGANDiscriminator, {"in_size": 100}, r"in_size must be base x 2.*nearest: 96 or 112"),
        (SAGANGenerator, {"step_channels": 0}, "step_channels must be a positive integer"),
        (SAGANDiscriminator, {"step_channels": -4}, "step_channels must be a positive integer"),
        (SAGANGenerator, {"out_channels": 0}, "out_channels must be a positive integer"),
        (SAGANDiscriminator, {"in_channels": 0}, "in_channels must be a positive integer"),
        (SAGANGenerator, {"encoding_dims": 0}, "encoding_dims must be a positive integer"),
        (SAGANGenerator, {"encoding_dims": 12.5}, "encoding_dims must be a positive integer"),
        (SAGANGenerator, {"out_size": 32, "attn_resolutions": (32,)}, r"resolutions \[4, 8, 16\]"),
        (SAGANDiscriminator, {"in_size": 32, "attn_resolutions": (3,)}, r"contains 3"),
        (SAGANGenerator, {"step_channels": 2, "out_size": 64}, r"Raise step_channels \(now 2\)"),
        (SAGANDiscriminator, {"step_channels": 2, "in_size": 64}, r"Raise step_channels \(now 2\)"),
        (SAGANGenerator, {"attn_layout": "fast"}, r"attn_layout must be one of"),
    ],
)
def test_bad_arguments_raise_value_error_at_construction(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_noise_with_the_wrong_encoding_dims_is_a_value_error():
    g = SAGANGenerator(encoding_dims=16, out_size=16, step_channels=8)
    with pytest.raises(ValueError, match=r"encoding_dims=16.*got \(2, 100\)"):
        g(torch.randn(2, 100))


def test_images_of_the_wrong_size_are_a_value_error():
    d = SAGANDiscriminator(in_size=32, in_channels=3, step_channels=8)
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\)"):
        d(torch.randn(2, 3, 64, 64))


def test_unfused_discriminator_supports_gradient_penalties():
    """WGAN-GP and DRAGAN differentiate D's input gradient, which fused kernels cannot."""
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    unfused = SAGANDiscriminator(16, 3, 8, attn_fused=False)
    attention = next(m for m in unfused.modules() if isinstance(m, SelfAttention2d))
    with torch.no_grad():
        attention.gamma.fill_(0.5)
    (grad,) = torch.autograd.grad(unfused(x).sum(), x, create_graph=True)
    grad.norm().backward()
    assert attention.query.parametrizations.weight.original.grad.abs().sum() > 0

    fused = SAGANDiscriminator(16, 3, 8, attn_fused="on")
    fused.load_state_dict(unfused.state_dict())
    (grad,) = torch.autograd.grad(fused(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        grad.norm().backward()


def _same_weights(cls, args, **options):
    torch.manual_seed(0)
    plain = cls(*args)
    torch.manual_seed(0)
    fast = cls(*args, **options)
    fast.load_state_dict(plain.state_dict())
    return plain.eval(), fast.eval()


def test_channels_last_gives_the_same_results():
    g, g_cl = _same_weights(SAGANGenerator, (8, 32, 3, 8), channels_last=True)
    d, d_cl = _same_weights(SAGANDiscriminator, (32, 3, 8), channels_last=True)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.allclose(g(z), g_cl(z), atol=1e-5)
        x = g(z)
        assert torch.allclose(d(x), d_cl(x), atol=1e-5)
    conv = d_cl.model[0].parametrizations.weight.original
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_returns_float32_close_to_float32():
    d, d_bf16 = _same_weights(SAGANDiscriminator, (16, 3, 8), amp="bf16")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref, out = d(x), d_bf16(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=0.05 * ref.abs().max().item() + 1e-3)
    with pytest.raises(ValueError, match=r"amp must be None or one of \['bf16'\]"):
        SAGANDiscriminator(16, 3, 8, amp="fp16")


@pytest.mark.slow
def test_compiled_nets_keep_their_state_dict_and_train():
    g, g_c = _same_weights(SAGANGenerator, (8, 16, 1, 8), compile="aot_eager")
    d, d_c = _same_weights(SAGANDiscriminator, (16, 1, 8), compile="aot_eager")
    assert list(g_c.state_dict()) == list(g.state_dict())
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(g_c(z), g(z), atol=1e-5)
    g_c.train(), d_c.train()
    loss = d_c(g_c(z)).mean()
    loss.backward()
    assert g_c.model[0].parametrizations.weight.original.grad is not None


def _conditional_pair(**kwargs):
    g = SAGANGenerator(16, out_size=16, out_channels=1, step_channels=8, attn_resolutions=(8,),
                       num_classes=5, **kwargs)
    d = SAGANDiscriminator(16, 1, 8, attn_resolutions=(8,), num_classes=5)
    return g, d


def test_conditional_generator_draws_the_class_asked_for():
    g, _ = _conditional_pair()
    assert g.label_type == "generated" and g.num_classes == 5
    norms = [m for m in g.modules() if type(m).__name__ == "ConditionalBatchNorm2d"]
    assert len(norms) == 2 and not any(isinstance(m, nn.BatchNorm2d) and m.affine for m in g.modules())
    with torch.no_grad():
        for m in norms:
            m.gain.normal_()  # classes start identical; make them differ
    z = torch.randn(1, 16).repeat(5, 1)
    images = g.eval()(z, torch.arange(5))
    assert images.shape == (5, 1, 16, 16)
    assert not torch.allclose(images[0], images[1])
    same = g(z[:2], torch.tensor([3, 3]))
    assert torch.allclose(same[0], same[1])
    z_s, y_s = g.sampler(7, "cpu")
    assert z_s.shape == (7, 16) and y_s.tolist() == [0, 1, 2, 3, 4, 0, 1]


def test_projection_discriminator_depends_on_the_label():
    _, d = _conditional_pair()
    d.eval()  # SN's power iteration would change the weights between calls
    assert d.label_type == "required"
    assert spectral_norm_of(d.embed) is not None
    x = torch.randn(1, 1, 16, 16).repeat(5, 1, 1, 1)
    scores = d(x, torch.arange(5))
    assert scores.shape == (5,)
    assert scores.unique().numel() == 5
    h = d(x, torch.arange(5), feature_matching=True)
    unconditional = d.disc[0](h).view(5)
    expected = unconditional + (d.embed(torch.arange(5)) * h.sum(dim=(2, 3))).sum(1)
    assert torch.allclose(scores, expected, atol=1e-5)


@pytest.mark.parametrize("build, match", [
    (lambda: SAGANGenerator(16, 16, 1, 8, num_classes=5, label_type="none"), "needs labels"),
    (lambda: SAGANGenerator(16, 16, 1, 8, label_type="generated"), "pass num_classes"),
    (lambda: SAGANGenerator(16, 16, 1, 8, num_classes=5, batchnorm=False), "keep batchnorm=True"),
    (lambda: SAGANGenerator(16, 16, 1, 8, num_classes=-2), "num_classes must be 0"),
    (lambda: SAGANDiscriminator(16, 1, 8, num_classes=5, label_type="generated"), "needs the real labels"),
    (lambda: SAGANDiscriminator(16, 1, 8, diffaugment="blur"), "unknown DiffAugment"),
])
def test_bad_conditional_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_labels_are_checked():
    g, d = _conditional_pair()
    z, x = torch.randn(2, 16), torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"needs labels: call it as net\(x, labels\)"):
        g(z)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        d(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer labels of shape"):
        d(x, torch.tensor([0.0, 1.0]))
    plain = SAGANGenerator(16, 16, 1, 8, attn_resolutions=(8,))
    with pytest.raises(ValueError, match="unconditional"):
        plain(z, torch.tensor([0, 1]))


def test_diffaugment_runs_in_training_mode_only():
    d = SAGANDiscriminator(16, 1, 8, attn_resolutions=(8,), diffaugment="translation,cutout")
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(0)
    a = d(x)
    torch.manual_seed(1)
    b = d(x)
    assert not torch.allclose(a, b)  # a fresh augmentation per call
    d.eval()
    assert torch.equal(d(x), d(x))


def test_bf16_activations_stay_bf16_through_attention_and_conditional_batchnorm():
    from torchgan_sagan.layers import ConditionalBatchNorm2d, SelfAttention2d

    for net, inputs in ((SAGANGenerator(16, 32, 1, 16, amp="bf16", num_classes=3),
                         (torch.randn(2, 16), torch.tensor([0, 2]))),
                        (SAGANDiscriminator(32, 1, 16, amp="bf16"), (torch.rand(2, 1, 32, 32),))):
        seen = []
        for m in net.modules():
            if isinstance(m, (SelfAttention2d, ConditionalBatchNorm2d)):
                m.register_forward_hook(lambda mod, inp, out: seen.append((type(mod).__name__, out.dtype)))
        assert net(*inputs).dtype == torch.float32  # the net's output is float32
        assert seen and all(dtype == torch.bfloat16 for _, dtype in seen), seen
