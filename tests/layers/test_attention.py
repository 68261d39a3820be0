import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d

from torchgan_sagan.layers import SelfAttention2d, spectral_norm_of
from torchgan_sagan.layers.attention import CPU_EXPLICIT_MAX_ENTRIES, _fused_attention, fused_kernel_pays

LAYOUTS = ["torchgan", "official"]


def _attention(layout, channels=16, fused="on", **kwargs):
    layer = SelfAttention2d(channels, layout=layout, fused=fused, **kwargs)
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


def test_head_widths_are_what_each_fused_kernel_takes():
    from torchgan_sagan.layers import head_widths

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert head_widths(cuda, torch.float32, 2, 8) == (4, 8)  # memory-efficient: two widths, multiples of 4
    assert head_widths(cuda, torch.float32, 8, 64) == (8, 64)  # nothing to pad
    assert head_widths(cuda, torch.float32, 6, 3) == (8, 4)
    assert head_widths(cuda, torch.bfloat16, 2, 8) == (8, 8)  # flash: one width, a multiple of 8
    assert head_widths(cuda, torch.bfloat16, 4, 12) == (16, 16)
    assert head_widths(cpu, torch.float32, 2, 8) == (8, 8)  # the CPU's flash: one width


@pytest.mark.parametrize("name", ["sagan_cond_digits_32", *(pytest.param(name, marks=pytest.mark.slow) for name in
                                                         ("sagan_tutorial_64", "sagan_resnet_celeba_64"))])
def test_the_presets_attention_reaches_the_fused_kernel_on_cuda(name, monkeypatch):
    """On a (fake) GPU in float32 the attention of a preset hands
    scaled_dot_product_attention widths the memory-efficient kernel accepts (else it
    falls back to the math kernel, which builds the N x N_k map): the narrowest preset
    (query width 2), and the two whose layers span the widths of all the others
    (4 to 32 in torchgan's layout, 8 and 16 in the paper's, in the DCGAN-style and the
    residual nets; running every preset under fake tensors takes minutes)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from torchgan_sagan import get_config
    from torchgan_sagan.models import BACKBONES

    seen = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        seen.append((q.size(-1), k.size(-1), v.size(-1), q.stride(-1), k.stride(-1), v.stride(-1)))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    cfg = get_config(name)
    with FakeTensorMode():
        with torch.device("cuda"):
            g_class, d_class = BACKBONES[cfg.backbone]
            g, d = g_class(**cfg.generator_args()), d_class(**cfg.discriminator_args())
            z = torch.randn(2, cfg.encoding_dims)
            labels = (torch.randint(0, cfg.num_classes, (2,)),) if cfg.num_classes else ()
        d(g(z, *labels), *labels)
    assert seen, "no attention ran"
    for qw, kw, vw, *strides in seen:
        assert qw == kw and qw % 4 == 0 and vw % 4 == 0 and strides == [1, 1, 1], (name, qw, vw)


def test_two_width_fused_attention_is_the_same_function(monkeypatch):
    """The path taken where the kernel accepts two widths (float32 on CUDA) computes
    what the one-width one does; here on the CPU's math kernel."""
    import torchgan_sagan.layers.attention as layers

    layer = SelfAttention2d(32, layout="official")
    with torch.no_grad():
        layer.gamma.fill_(1.0)
    x = torch.randn(2, 32, 8, 8)
    padded = layer(x)
    monkeypatch.setattr(layers, "head_widths", lambda device, dtype, qk, v: (qk + 2, v))
    assert torch.allclose(layer(x), padded, atol=1e-5)


def _reference_forward(layer, x):
    """The layer as it computed before its projections were stacked: three separate 1x1
    convolutions (each weight read through its own parametrization), keys and values
    pooled one after the other, the output convolution, then ``x + gamma * o``."""
    b, c, h, w = x.shape
    pool = nn.MaxPool2d(2, ceil_mode=True) if layer.layout == "official" else nn.Identity()
    q = layer.query(x).flatten(2).transpose(1, 2)  # (B, N, C_qk)
    k = pool(layer.key(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_qk)
    v = pool(layer.value(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_v)
    o = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v  # (B, N, C_v)
    o = layer.out(o.transpose(1, 2).reshape(b, layer.value_dims, h, w))  # (B, C, H, W)
    return x + layer.gamma * o


def _run(layer, forward, x, steps=3):
    """Training-mode passes (each one power iteration per weight), the last one backward."""
    x = x.clone().requires_grad_(True)
    for _ in range(steps):
        out = forward(layer, x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    buffers = {n: t.clone() for n, t in layer.named_buffers()}
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    return out.detach(), x.grad, buffers, grads


@pytest.mark.parametrize("fused", ["on", "off"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("spectral", [True, False])
def test_the_same_function_as_three_convolutions_forward_backward_and_power_iterations(layout, fused, spectral):
    torch.manual_seed(0)
    layer = _attention(layout, channels=32, fused=fused, spectral_norm=spectral)
    twin = copy.deepcopy(layer)
    x = torch.randn(3, 32, 8, 6)
    out, x_grad, buffers, grads = _run(layer, lambda m, t: m(t), x)
    ref_out, ref_x_grad, ref_buffers, ref_grads = _run(twin, _reference_forward, x)
    close = dict(rtol=1e-4, atol=1e-5)  # float rounding: sums in another order
    torch.testing.assert_close(out, ref_out, **close)
    torch.testing.assert_close(x_grad, ref_x_grad, **close)
    assert grads.keys() == ref_grads.keys() and buffers.keys() == ref_buffers.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **close, msg=name)
    for name in buffers:  # the power iterations' u and v, one pair per weight
        torch.testing.assert_close(buffers[name], ref_buffers[name], **close, msg=name)
    if spectral:
        assert {n for n in buffers if n.endswith("._u")} == {
            f"{m}.parametrizations.weight.0._u" for m in ("query", "key", "value")
        } | ({"out.parametrizations.weight.0._u"} if layout == "official" else set())


def test_eval_mode_runs_no_power_iteration():
    layer = _attention("official", spectral_norm=True).eval()
    before = {n: t.clone() for n, t in layer.named_buffers()}
    layer(torch.randn(2, 16, 8, 8))
    assert all(torch.equal(before[n], t) for n, t in layer.named_buffers())


def test_state_dict_keys_are_those_of_the_three_convolutions():
    """Checkpoints written before the projections were stacked load unchanged."""
    plain = SelfAttention2d(16, layout="official")
    assert set(plain.state_dict()) == {"gamma", "query.weight", "key.weight", "value.weight", "out.weight"}
    normalized = SelfAttention2d(16, layout="official", spectral_norm=True)
    for name in ("query", "key", "value", "out"):
        assert spectral_norm_of(getattr(normalized, name)) is not None
        for part in ("original", "0._u", "0._v"):
            assert f"{name}.parametrizations.weight.{part}" in normalized.state_dict()
    dropin = SelfAttention2d(16)
    assert set(dropin.state_dict()) == {"gamma"} | {f"{m}.{p}" for m in ("query", "key", "value")
                                                    for p in ("weight", "bias")}


def test_an_odd_row_and_column_are_keys_too():
    """7x7 pools to 4x4 keys: position (6, 6) is a key and a value of every query (a
    floor pooling to 3x3 would drop it, and the output at (0, 0) would not see it)."""
    torch.manual_seed(0)
    layer = _attention("official", channels=16)
    x = torch.randn(1, 16, 7, 7)
    out, attn = layer(x, return_attn=True)
    assert attn.shape == (1, 49, 16)
    changed = x.clone()
    changed[..., 6, 6] += 5.0
    assert not torch.allclose(layer(changed)[..., 0, 0], out[..., 0, 0])
    assert torch.allclose(layer(x), out, atol=1e-5)  # the fused path agrees on odd sizes too


class _CountAttentionKernels(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "scaled_dot_product" in func.__name__:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("size, fused", [(8, False), (16, True)])
def test_auto_takes_the_explicit_map_on_small_cpu_maps_and_the_kernel_above(size, fused):
    layer = _attention("official", fused="auto")
    x = torch.randn(2, 16, size, size)
    entries = size * size * (size // 2) ** 2
    assert (entries > CPU_EXPLICIT_MAX_ENTRIES) == fused
    with _CountAttentionKernels() as counter:
        out = layer(x)
    assert (counter.calls > 0) == fused == layer.uses_fused_kernel(x)
    layer.fused = "off"
    assert torch.allclose(layer(x), out, atol=1e-5)


def test_auto_always_takes_the_kernel_on_a_gpu_and_modes_are_checked():
    assert fused_kernel_pays(torch.device("cuda"), 4, 4)
    assert not fused_kernel_pays(torch.device("cpu"), 4, 4)
    layer = SelfAttention2d(16)
    assert layer.fused == "auto"
    layer.fused = False
    assert layer.fused == "off" and "fused='off'" in repr(layer)
    assert SelfAttention2d(16, fused=True).fused == "on"
    with pytest.raises(ValueError, match="fused"):
        SelfAttention2d(16, fused="sometimes")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_projections_replaced_by_other_modules_are_called(layout):
    """Wrapping the 1x1 convolutions (as the tutorial ablation does with torchgan's
    SpectralNorm2d) runs them as modules: the same function as the plain layer."""
    torch.manual_seed(0)
    plain = _attention(layout, channels=16)
    wrapped = copy.deepcopy(plain)
    for name in ("query", "key", "value") + (("out",) if layout == "official" else ()):
        setattr(wrapped, name, nn.Sequential(getattr(wrapped, name)))
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(wrapped(x), plain(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wrapped(x, return_attn=True)[1], plain(x, return_attn=True)[1])
