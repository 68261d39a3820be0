import copy

import pytest
import torch
import torch.nn as nn

from torchgan_sagan.layers import SelfAttention2d, apply_spectral_norm, refresh_spectral_norm, spectral_norm, spectral_norm_of
from torchgan_sagan.layers.spectral_norm import normalized_weights


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


def _normalized_modules():
    torch.manual_seed(0)
    return [spectral_norm(m) for m in (nn.Conv2d(12, 3, 1), nn.Conv2d(12, 7, 1), nn.Conv2d(6, 12, 1, bias=False),
                                       nn.Linear(5, 9))]


@pytest.mark.parametrize("training", [True, False])
def test_normalized_weights_in_one_batch_equal_each_parametrization_read_alone(training):
    ours, theirs = _normalized_modules(), _normalized_modules()
    for m in ours + theirs:
        m.train(training)
    for _ in range(3):  # three power iterations in training mode
        batched = normalized_weights(ours)
        alone = [m.weight for m in theirs]
    for a, b in zip(batched, alone):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours, theirs):
        for name in ("_u", "_v"):
            torch.testing.assert_close(getattr(spectral_norm_of(a), name), getattr(spectral_norm_of(b), name),
                                       rtol=1e-5, atol=1e-6)
    # gradients reach each original weight as through the parametrizations
    sum(w.square().sum() * (i + 1) for i, w in enumerate(batched)).backward()
    sum(w.square().sum() * (i + 1) for i, w in enumerate(alone)).backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.parametrizations.weight.original.grad, b.parametrizations.weight.original.grad,
                                   rtol=1e-4, atol=1e-6)


def test_normalized_weights_reads_one_by_one_unless_every_module_has_the_plain_norm():
    modules = _normalized_modules()[:2] + [nn.Conv2d(12, 3, 1)]
    weights = normalized_weights(modules)
    assert weights[2] is modules[2].weight
    for got, m in zip(weights[:2], modules[:2]):
        m.eval()
        torch.testing.assert_close(got, m.weight)  # one power iteration each, as a read
    modules[0].train()
    assert torch.allclose(normalized_weights(modules[:1])[0], modules[0].weight, atol=1e-6)


def test_inside_the_parametrization_cache_each_weight_is_normalized_once_for_all_calls():
    modules = _normalized_modules()
    from torch.nn.utils import parametrize

    before = [spectral_norm_of(m)._u.clone() for m in modules]
    with parametrize.cached():
        first = normalized_weights(modules)
        after_first = [spectral_norm_of(m)._u.clone() for m in modules]
        second = normalized_weights(modules)
    assert all(a is b for a, b in zip(first, second))  # the cached tensors
    assert all(not torch.equal(a, b) for a, b in zip(before, after_first))  # one power iteration ...
    assert all(torch.equal(spectral_norm_of(m)._u, u) for m, u in zip(modules, after_first))  # ... not two


def _assert_same_norms(ours, theirs, batched, tol=1e-5):
    for got, m in zip(batched, theirs):
        torch.testing.assert_close(got, m.weight, rtol=tol, atol=tol / 10)  # one power iteration for theirs too
    for a, b in zip(ours, theirs):
        for name in ("_u", "_v"):
            torch.testing.assert_close(getattr(spectral_norm_of(a), name), getattr(spectral_norm_of(b), name),
                                       rtol=tol, atol=tol / 10)


def test_the_batch_follows_buffers_and_weights_changed_behind_its_back():
    """The batch keeps padded copies of every u and v between calls: each way the
    buffers or weights change outside it must reach the next call."""
    ours, theirs = _normalized_modules(), _normalized_modules()
    _assert_same_norms(ours, theirs, normalized_weights(ours))
    # a checkpoint loaded in place (new weights, u and v)
    torch.manual_seed(1)
    other = _normalized_modules()
    for m in other:
        for p in m.parameters():
            p.data.normal_()
        m.weight  # noqa: B018 (a power iteration moves u and v)
    for a, b, o in zip(ours, theirs, other):
        a.load_state_dict(o.state_dict())
        b.load_state_dict(o.state_dict())
    _assert_same_norms(ours, theirs, normalized_weights(ours))
    # torch's own read runs a power iteration on one module's buffers
    ours[1].weight  # noqa: B018
    theirs[1].weight  # noqa: B018
    _assert_same_norms(ours, theirs, normalized_weights(ours))
    # a new parameter in the weight's place
    for m in (ours[2], theirs[2]):
        m.parametrizations.weight.original = nn.Parameter(m.parametrizations.weight.original.detach() + 1)
    _assert_same_norms(ours, theirs, normalized_weights(ours))
    # .to() gives new tensors
    for m in ours + theirs:
        m.double()
    for a, b in zip(ours, theirs):  # the same start, to float64's rounding
        a.load_state_dict(b.state_dict())
    batched = normalized_weights(ours)
    assert all(w.dtype == torch.float64 for w in batched)
    _assert_same_norms(ours, theirs, batched, tol=1e-12)  # computed in float64, not in the old float32 copies


def test_a_copy_normalizes_on_its_own():
    ours, theirs = _normalized_modules(), _normalized_modules()
    _assert_same_norms(ours, theirs, normalized_weights(ours))
    copies, their_copies = copy.deepcopy(ours), copy.deepcopy(theirs)
    before = [spectral_norm_of(m)._u.clone() for m in ours]
    for _ in range(2):
        _assert_same_norms(copies, their_copies, normalized_weights(copies))
    assert all(torch.equal(spectral_norm_of(m)._u, u) for m, u in zip(ours, before))  # the originals untouched
    _assert_same_norms(ours, theirs, normalized_weights(ours))


def test_two_calls_before_one_backward_keep_each_calls_gradient():
    """torchgan's own D step calls D on real and then on fake images outside the
    parametrization cache and differentiates both at once."""
    ours, theirs = _normalized_modules(), _normalized_modules()
    first, second = normalized_weights(ours), normalized_weights(ours)
    their_first, their_second = [m.weight for m in theirs], [m.weight for m in theirs]
    loss = sum(w.square().sum() * (i + 1) for i, w in enumerate(first)) + sum(w.sum() for w in second)
    their_loss = sum(w.square().sum() * (i + 1) for i, w in enumerate(their_first)) + sum(w.sum() for w in their_second)
    loss.backward()
    their_loss.backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.parametrizations.weight.original.grad, b.parametrizations.weight.original.grad,
                                   rtol=1e-4, atol=1e-6)


def test_under_inference_mode_the_weights_are_read_one_by_one():
    ours, theirs = _normalized_modules(), _normalized_modules()
    for m in ours + theirs:
        m.eval()
    with torch.inference_mode():
        for got, m in zip(normalized_weights(ours), theirs):
            torch.testing.assert_close(got, m.weight)


#: Products that CUDA runs in TF32 when ``torch.backends.cuda.matmul.allow_tf32`` is on
#: (the package's default there): matrix-matrix products and their batched forms.
_TF32_PRODUCTS = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "_mm_plus_mm"}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_batched_power_iteration_and_sigma_use_no_product_tf32_would_round(training):
    """torch's own parametrization computes W v, W^T u and u . W v with mv and vdot,
    which TF32 does not touch; the batch must not round them to a 10-bit mantissa on a
    GPU either."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    layer = SelfAttention2d(32, layout="official", spectral_norm=True).train(training)
    convs = [layer.query, layer.key, layer.value, layer.out]
    normalized_weights(convs)  # the plan is built (it reads the vectors once)
    with Ops() as seen:
        normalized_weights(convs)
    assert seen.names and not seen.names & _TF32_PRODUCTS, sorted(seen.names)


@pytest.mark.slow
def test_compiled_nets_train_through_torchgans_d_step(tmp_path):
    """compile=True: the D step reads D's weights inside parametrize.cached() (two calls
    of D); while compiling, the batched path must leave the weights to torch's own
    reads. Before it did, Dynamo failed on the cache lookup (InternalTorchDynamoError)."""
    from torchgan_sagan import get_config, make_trainer
    from torchgan_sagan.trainer.trainer import train_step

    cfg = get_config("sagan_tutorial_64", step_channels=8, compile="eager", image_size=32, g_attn_resolutions=(16,),
                     d_attn_resolutions=(8,))
    trainer = make_trainer(cfg, device="cpu", out=tmp_path)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    for _ in range(2):
        train_step(trainer, images)
    assert trainer.loss_information["generator_iters"] == 2
