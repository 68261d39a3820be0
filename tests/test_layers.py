import pytest
import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d

from torchgan_sagan.layers import (
    ConditionalBatchNorm2d,
    ConditionalSequential,
    SelfAttention2d,
    _fused_attention,
    apply_spectral_norm,
    refresh_spectral_norm,
    spectral_norm_of,
)

LAYOUTS = ["torchgan", "official"]


def _attention(layout, channels=16, **kwargs):
    layer = SelfAttention2d(channels, layout=layout, **kwargs)
    with torch.no_grad():
        layer.gamma.fill_(0.7)  # gamma starts at 0; make the attention path count
    return layer


def _num_keys(layout, n):
    return n // 4 if layout == "official" else n


@pytest.mark.parametrize("layout", LAYOUTS)
def test_attention_rows_sum_to_one_over_keys(layout):
    layer = _attention(layout)
    x = torch.randn(2, 16, 8, 8)
    out, attn = layer(x, return_attn=True)
    assert out.shape == x.shape
    assert attn.shape == (2, 64, _num_keys(layout, 64))
    assert torch.allclose(attn.sum(dim=-1), torch.ones(2, 64), atol=1e-5)
    assert (attn >= 0).all()


def test_torchgan_layer_normalizes_over_queries_and_ours_does_not():
    """Same weights, same input: torchgan's map has columns summing to 1, ours rows."""
    theirs = TorchganSelfAttention2d(16, return_attn=True)
    ours = SelfAttention2d(16, return_attn=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 16, 4, 4)
    _, their_attn = theirs(x)
    _, our_attn = ours(x)
    # torchgan's attn[k, q] is indexed (key, query) and normalized over queries.
    assert torch.allclose(their_attn.sum(dim=-1), torch.ones(1, 16), atol=1e-5)
    assert not torch.allclose(our_attn.transpose(1, 2), their_attn, atol=1e-3)


def test_gamma_starts_at_zero_so_the_block_is_the_identity():
    for layout in LAYOUTS:
        layer = SelfAttention2d(16, layout=layout)
        x = torch.randn(2, 16, 8, 8)
        assert layer.gamma.item() == 0.0
        assert torch.equal(layer(x), x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_path_equals_explicit_map_forward_and_backward(layout):
    layer = _attention(layout, spectral_norm=True)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    results = []
    for return_attn in (False, True):
        layer.eval()  # freeze spectral norm so both passes see the same weights
        layer.zero_grad()
        x.grad = None
        out = layer(x, return_attn=return_attn)
        out = out[0] if return_attn else out
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
        results.append((out.detach(), grads))
    (fused, fused_grads), (explicit, explicit_grads) = results
    assert torch.allclose(fused, explicit, atol=1e-5)
    for a, b in zip(fused_grads, explicit_grads):
        assert torch.allclose(a, b, atol=1e-4)


class _RecordOutputs(TorchDispatchMode):
    """Records the shape of every tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_path_builds_no_attention_map(layout):
    layer = _attention(layout, channels=8)
    b, n = 2, 32 * 32
    x = torch.randn(b, 8, 32, 32, requires_grad=True)
    map_numel = b * n * _num_keys(layout, n)

    def largest(return_attn):
        with _RecordOutputs() as rec:
            out = layer(x, return_attn=return_attn)
            (out[0] if return_attn else out).sum().backward()
        return max(torch.Size(s).numel() for s in rec.shapes)

    # The explicit path shows the check can fail: it does build the map.
    assert largest(True) >= map_numel
    assert largest(False) < map_numel // 4


@pytest.mark.filterwarnings("ignore:Flash attention")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_path_runs_on_the_flash_kernel(layout):
    """With only the flash backend allowed, SDPA raises if it cannot use it."""
    layer = _attention(layout)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        layer(x).sum().backward()
    assert x.grad is not None
    # Without the padding, q/k and v widths differ and flash refuses them.
    q, v = torch.randn(2, 1, 64, 2), torch.randn(2, 1, 16, 8)
    k = torch.randn(2, 1, 16, 2)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pytest.raises(RuntimeError):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)
    # The padded helper equals the explicit formula.
    q, k, v = q.squeeze(1), k.squeeze(1), v.squeeze(1)
    expected = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
    assert torch.allclose(_fused_attention(q, k, v), expected, atol=1e-5)


def test_official_layout_shapes():
    layer = SelfAttention2d(64, layout="official")
    assert (layer.qk_dims, layer.value_dims) == (8, 32)
    assert isinstance(layer.pool, nn.MaxPool2d)
    assert layer.out.in_channels == 32 and layer.out.out_channels == 64


def test_torchgan_layout_loads_torchgan_state_dict_and_matches_its_output_shape():
    theirs = TorchganSelfAttention2d(32)
    ours = SelfAttention2d(32)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 32, 8, 8)
    assert ours(x).shape == theirs(x).shape


def test_constructor_compatible_with_torchgan():
    layer = SelfAttention2d(32, 2, True)
    out, attn = layer(torch.randn(1, 32, 4, 4))
    assert layer.qk_dims == 2 and attn.shape == (1, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_dims": 4}, "input_dims=4 is too small"),
        ({"input_dims": 0}, "input_dims must be a positive integer"),
        ({"input_dims": 16, "output_dims": 0}, "output_dims must be a positive integer"),
        ({"input_dims": 1, "output_dims": 1, "layout": "official"}, "input_dims >= 2"),
        ({"input_dims": 16, "layout": "paper"}, r"layout must be one of \['torchgan', 'official'\]"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfAttention2d(**kwargs)


def test_wrong_input_channels_is_a_value_error():
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 16, H, W\)"):
        SelfAttention2d(16)(torch.randn(1, 8, 4, 4))


def _top_singular_value(module):
    """Of the matrix spectral norm normalizes: (first dim x the rest), for a transposed
    convolution (C_in x C_out * k * k) too."""
    w = module.weight
    return torch.linalg.matrix_norm(w.reshape(w.size(0), -1), ord=2).item()


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv2d(8, 16, 3),
        lambda: nn.ConvTranspose2d(16, 8, 4),
        lambda: nn.Linear(12, 5),
        lambda: nn.Conv2d(16, 2, 1),
    ],
    ids=["conv", "conv_transpose", "linear", "conv1x1"],
)
def test_spectral_norm_top_singular_value_is_one(make):
    module = make()
    with torch.no_grad():
        module.weight.mul_(5.0)
    assert _top_singular_value(module) > 2
    apply_spectral_norm(module)
    module.train()
    for _ in range(30):  # one power iteration per training forward
        module(torch.randn(2, *_input_shape(module)))
    assert _top_singular_value(module) == pytest.approx(1.0, abs=1e-2)


def _input_shape(module):
    if isinstance(module, nn.Linear):
        return (module.in_features,)
    return (module.in_channels, 6, 6)


def test_transposed_convolution_is_normalized_like_the_convolution_it_is_the_adjoint_of():
    weight = torch.randn(16, 8, 4, 4) * 3
    transposed = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1, bias=False)  # weight (C_in, C_out, k, k)
    conv = nn.Conv2d(8, 16, 4, stride=2, padding=1, bias=False)  # the same tensor as (out, in, k, k)
    for m in (transposed, conv):
        with torch.no_grad():
            m.weight.copy_(weight)
        apply_spectral_norm(m)
        refresh_spectral_norm(m, iterations=50)
    assert torch.allclose(transposed.weight, conv.weight, atol=1e-4)
    # The two are adjoint maps: <T x, y> = <x, C y>, so they share their norm.
    x, y = torch.randn(1, 16, 5, 5), torch.randn(1, 8, 10, 10)
    assert torch.allclose((transposed(x) * y).sum(), (x * conv(y)).sum(), rtol=1e-4, atol=1e-4)


def test_generator_output_layer_is_not_held_to_a_unit_length_kernel():
    # torch's default for transposed convolutions (dim=1) would normalize the (1 x 256)
    # matrix of a 1-channel output layer: the whole kernel to length 1.
    from torchgan_sagan import SAGANGenerator

    last = SAGANGenerator(8, 32, 1, 16).model[-2]
    assert isinstance(last, nn.ConvTranspose2d) and last.weight.shape == (16, 1, 4, 4)
    assert _top_singular_value(last) == pytest.approx(1.0, abs=1e-2)
    assert last.weight.norm() > 1.5


def test_spectral_norm_is_frozen_in_eval_mode():
    conv = apply_spectral_norm(nn.Conv2d(4, 8, 3))
    sn = spectral_norm_of(conv)
    x = torch.randn(2, 4, 6, 6)
    conv.eval()
    u = sn._u.clone()
    first = conv(x)
    for _ in range(3):
        assert torch.equal(conv(x), first)
    assert torch.equal(sn._u, u)
    conv.train()
    conv(x)
    assert not torch.equal(sn._u, u)


def test_apply_spectral_norm_is_idempotent_and_covers_attention():
    layer = SelfAttention2d(16, layout="official", spectral_norm=True)
    apply_spectral_norm(layer)
    for conv in (layer.query, layer.key, layer.value, layer.out):
        assert spectral_norm_of(conv) is not None
        assert len(conv.parametrizations.weight) == 1


def test_refresh_spectral_norm_after_in_place_weight_change():
    conv = apply_spectral_norm(nn.Conv2d(8, 8, 3)).eval()
    with torch.no_grad():
        conv.parametrizations.weight.original.copy_(torch.randn(8, 8, 3, 3) * 3)
    refresh_spectral_norm(conv)
    assert not conv.parametrizations.weight[0].training
    assert _top_singular_value(conv) == pytest.approx(1.0, abs=1e-2)


def test_conditional_batchnorm_starts_as_batchnorm_and_conditions_per_class():
    x = torch.randn(6, 4, 3, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cbn = ConditionalBatchNorm2d(4, 3)
    plain = nn.BatchNorm2d(4, affine=False)
    assert torch.allclose(cbn(x, labels), plain(x), atol=1e-6)
    with torch.no_grad():
        cbn.gain[1] = 2.0
        cbn.bias[2] = -1.0
    y, normed = cbn(x, labels), plain(x)
    assert torch.allclose(y[labels == 0], normed[labels == 0], atol=1e-6)
    assert torch.allclose(y[labels == 1], 2 * normed[labels == 1], atol=1e-6)
    assert torch.allclose(y[labels == 2], normed[labels == 2] - 1, atol=1e-6)


def test_conditional_sequential_hands_labels_to_conditional_layers_only():
    seq = ConditionalSequential(nn.Conv2d(2, 4, 1), ConditionalBatchNorm2d(4, 5), nn.ReLU())
    with torch.no_grad():
        seq[1].bias[4] = 10.0
    out = seq(torch.randn(3, 2, 2, 2), torch.tensor([4, 4, 0]))
    assert (out[:2] > 5).all() and (out[2] < 5).all()
    assert ConditionalSequential(nn.ReLU())(torch.tensor([-1.0])).item() == 0.0  # no labels needed


def test_conditional_batchnorm_tables_are_not_spectrally_normalized():
    net = apply_spectral_norm(ConditionalSequential(nn.Conv2d(2, 4, 1), ConditionalBatchNorm2d(4, 5)))
    assert spectral_norm_of(net[0]) is not None
    assert {n for n, _ in net[1].named_parameters()} == {"gain", "bias"}


def test_padding_only_where_the_kernel_needs_one_head_width():
    from torchgan_sagan.layers import needs_one_head_width

    assert needs_one_head_width(torch.device("cpu"), torch.float32)  # CPU flash
    assert needs_one_head_width(torch.device("cuda"), torch.bfloat16)  # CUDA flash
    assert not needs_one_head_width(torch.device("cuda"), torch.float32)  # memory-efficient kernel


def test_unpadded_fused_attention_is_the_same_function(monkeypatch):
    """The path taken where the kernel accepts two widths (float32 on CUDA) computes
    what the padded one does; here on the CPU's math kernel."""
    import torchgan_sagan.layers as layers

    layer = SelfAttention2d(32, layout="official")
    with torch.no_grad():
        layer.gamma.fill_(1.0)
    x = torch.randn(2, 32, 8, 8)
    padded = layer(x)
    monkeypatch.setattr(layers, "needs_one_head_width", lambda device, dtype: False)
    assert torch.allclose(layer(x), padded, atol=1e-5)
