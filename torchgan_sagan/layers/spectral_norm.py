r"""Spectral normalization, chosen in one place: :func:`spectral_norm`, which uses
``torch.nn.utils.parametrizations.spectral_norm``. In training mode each forward runs
one power iteration; in eval mode the estimate is frozen, so evaluation changes no
state.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.utils import parametrize

__all__ = ["SPECTRAL_NORM_TYPES", "spectral_norm", "apply_spectral_norm", "spectral_norm_of", "refresh_spectral_norm",
           "normalized_weights"]

#: Layer types that :func:`apply_spectral_norm` normalizes.
SPECTRAL_NORM_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)

def spectral_norm(module: nn.Module, *, n_power_iterations: int = 1) -> nn.Module:
    """Spectrally normalize ``module.weight`` with torch's parametrization, over the
    weight's first dimension for every layer type.

    For a convolution that is the matrix of Miyato et al. (out channels x in channels
    * k * k). A transposed convolution with weight (C_in, C_out, k, k) is the adjoint
    of the convolution with that same weight, and a map and its adjoint have the same
    norm, so its matrix is (C_in x C_out * k * k): ``dim=0`` as well, as
    ``torchgan.layers.SpectralNorm2d`` has it. torch's own default for transposed
    convolutions, ``dim=1``, normalizes the (C_out x C_in * k * k) matrix instead,
    which on a generator's output layer (C_out of 1 or 3) holds the whole kernel to
    about unit length: on the tutorial network it cost FID 24.99 against 18.50
    (docs/results.md).
    """
    return nn.utils.parametrizations.spectral_norm(
        module, n_power_iterations=n_power_iterations, dim=0
    )


def spectral_norm_of(module: nn.Module) -> Optional[nn.Module]:
    """The spectral-norm parametrization on ``module.weight``, or ``None``."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if hasattr(p, "_u") and hasattr(p, "_v"):
            return p
    return None


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalize every conv, transposed conv, linear and embedding in ``net``
    not normalized yet (so the call is idempotent); return ``net``."""
    for m in list(net.modules()):
        if isinstance(m, SPECTRAL_NORM_TYPES) and spectral_norm_of(m) is None:
            spectral_norm(m)
    return net


@torch.no_grad()
def refresh_spectral_norm(net: nn.Module, iterations: int = 15) -> None:
    """Re-estimate the top singular vectors after weights were changed in place.

    ``weight`` is recomputed by its parametrization on every access, and in training
    mode each recomputation runs one power iteration; this runs ``iterations`` of them
    for every normalized layer of ``net`` and restores the previous mode.
    """
    for m in net.modules():
        sn = spectral_norm_of(m)
        if sn is None:
            continue
        was_training = sn.training
        sn.train()
        for _ in range(iterations):
            m.weight  # noqa: B018 (the access runs a power iteration)
        sn.train(was_training)


def _plain_spectral_norm(module: nn.Module) -> Optional[nn.Module]:
    """The spectral norm on ``module.weight`` if it is the weight's only parametrization,
    over dimension 0 (as :func:`spectral_norm` makes it), else ``None``."""
    sn = spectral_norm_of(module)
    if sn is None or len(module.parametrizations.weight) != 1 or sn.dim != 0:
        return None
    return sn


def normalized_weights(modules: Sequence[nn.Module]) -> List[torch.Tensor]:
    """``[m.weight for m in modules]``, with the spectral norms of all of them computed
    in one batch where each is this package's :func:`spectral_norm`.

    The same arithmetic as each parametrization's own forward, per weight: in training
    mode one power iteration per ``n_power_iterations`` (``u = normalize(W v)``, then
    ``v = normalize(W^T u)``, written into that weight's ``_u`` and ``_v``), then
    ``W / (u . W v)``. The matrices are zero-padded to one shape, which changes no
    singular vector or value, in slots kept between calls with the stacked u and v
    (:class:`_BatchPlan`). A handful of small kernels replace several per weight, which
    is what small layers such as the attention's 1x1 projections spend most on.
    Otherwise (a module without it, with other parametrizations, under inference mode
    or while compiling) the weights are read one by one. Inside
    ``torch.nn.utils.parametrize.cached()`` (several calls of a net with one power
    iteration: D on real, then on fake images) the batch's weights go into that cache,
    under the key ``module.weight`` reads them by, and later calls take them from there.
    """
    if torch.compiler.is_compiling():  # torch's own reads (and cache), which compiling traces
        return [m.weight for m in modules]
    cache = parametrize._cache if parametrize._cache_enabled else None
    if cache is not None:
        cached = [cache.get((id(m), "weight")) for m in modules]
        if all(w is not None for w in cached):
            return cached
        if any(w is not None for w in cached):
            return [m.weight for m in modules]
    plan = _BatchPlan.of(modules)
    weights = [m.weight for m in modules] if plan is None else list(_SpectralNormBatch.apply(plan, *plan.originals))
    if cache is not None:
        cache.update({(id(m), "weight"): w for m, w in zip(modules, weights)})
    return weights


def _settings(sn: nn.Module) -> tuple:
    return sn.eps, sn.n_power_iterations, sn.training


class _BatchPlan:
    """What the batched spectral norm of one group of modules keeps between calls, so
    that a call pads and stacks nothing: a zero-padded slot per weight matrix, in one
    (M, R, K) tensor, and every u and v stacked and padded, (M, R) and (M, K).

    It stays valid while the modules' weights are the same parameters, of the same dtype
    and device (their values are read at every call), and their ``_u`` and ``_v``
    buffers are the tensors, at the versions, it last wrote or read. Whatever else
    changes them (``load_state_dict``, ``.to()``, DDP's buffer broadcast, a read of
    ``module.weight``, :func:`refresh_spectral_norm`) changes one of those, and the plan
    reads the vectors again. It is updated in place, as the buffers are, so that a
    captured CUDA graph can replay it (tested with fake CUDA tensors, not yet on a
    GPU). Kept on the group's first module, but not copied with it (an EMA copy, an
    export): a copy builds its own.
    """

    @classmethod
    def of(cls, modules: Sequence[nn.Module]) -> Optional["_BatchPlan"]:
        """The group's plan, built or refreshed as needed; ``None`` where the weights are
        to be read one by one: a module without this package's plain spectral norm, norms
        with different settings or modes, or inference tensors (which keep no versions)."""
        if torch.is_inference_mode_enabled() or torch.compiler.is_compiling():
            return None  # inference tensors keep no versions; a compiled graph fuses the reads itself
        plan = modules[0].__dict__.get("_spectral_norm_batch")
        if plan is not None and plan.matches(modules):
            if plan.seen != plan.vector_state():
                plan.read_vectors()
            return plan
        norms = [_plain_spectral_norm(m) for m in modules]
        if any(sn is None for sn in norms) or len({_settings(sn) for sn in norms}) != 1 or any(
                t.is_inference() for sn in norms for t in (sn._u, sn._v)):
            return None
        plan = cls(modules, norms)
        modules[0].__dict__["_spectral_norm_batch"] = plan
        return plan

    def matches(self, modules: Sequence[nn.Module]) -> bool:
        """Whether ``modules`` are the group this plan was built for, unchanged: the same
        modules, each with the same single parametrization of the same weight parameter,
        of the same dtype and device, their norms alike in settings and mode."""
        if tuple(map(id, modules)) != self.ids or [(w.dtype, w.device) for w in self.originals] != self.placement:
            return False
        for m, chain, original in zip(modules, self.chains, self.originals):
            current = m._modules.get("parametrizations")
            if (current is None or current._modules.get("weight") is not chain or len(chain) != 1
                    or chain._parameters.get("original") is not original):
                return False
        return len({_settings(sn) for sn in self.norms}) == 1

    def __init__(self, modules: Sequence[nn.Module], norms: Sequence[nn.Module]) -> None:
        self.ids = tuple(map(id, modules))
        self.chains = [m.parametrizations.weight for m in modules]
        self.norms = list(norms)
        self.originals = [m.parametrizations.weight.original for m in modules]
        self.placement = [(w.dtype, w.device) for w in self.originals]
        self.shapes = [(w.size(0), w[0].numel()) for w in self.originals]  # each weight as a matrix
        rows, cols = max(r for r, _ in self.shapes), max(k for _, k in self.shapes)
        options = {"dtype": self.originals[0].dtype, "device": self.originals[0].device}
        self.slots = torch.zeros(len(self.shapes), rows, cols, **options)  # (M, R, K)
        self.slot_views = [self.slots[i, :r, :k] for i, (r, k) in enumerate(self.shapes)]
        self.u = torch.zeros(len(self.shapes), rows, **options)  # (M, R)
        self.v = torch.zeros(len(self.shapes), cols, **options)  # (M, K)
        self.read_vectors()

    def __deepcopy__(self, memo) -> None:
        return None

    def buffers(self) -> List[torch.Tensor]:
        return [sn._buffers["_u"] for sn in self.norms] + [sn._buffers["_v"] for sn in self.norms]

    def vector_state(self, buffers: Optional[List[torch.Tensor]] = None) -> list:
        return [(id(t), t._version) for t in (self.buffers() if buffers is None else buffers)]

    def _see(self) -> None:
        self.seen_buffers = self.buffers()  # held, so that no new tensor can take a seen one's id
        self.seen = self.vector_state(self.seen_buffers)

    def read_vectors(self) -> None:
        with torch.no_grad():
            self.u.zero_()
            self.v.zero_()
            for i, sn in enumerate(self.norms):
                self.u[i, : sn._u.numel()] = sn._u
                self.v[i, : sn._v.numel()] = sn._v
        self._see()

    def write_vectors(self, u: torch.Tensor, v: torch.Tensor) -> None:
        """Keep ``u`` (M, R) and ``v`` (M, K) and write each module's part to its buffers."""
        torch._foreach_copy_([self.u, self.v] + self.buffers(),
                             [u, v] + [u[i, :r] for i, (r, _) in enumerate(self.shapes)]
                             + [v[i, :k] for i, (_, k) in enumerate(self.shapes)])
        self._see()


class _SpectralNormBatch(torch.autograd.Function):
    """``W_i / sigma_i`` for a group's weights, the power iterations batched over them.

    In training mode one power iteration per ``n_power_iterations`` on the zero-padded
    matrices (padding changes no singular vector or value), written to each module's
    buffers; then ``sigma = u^T W v``. Autograd records one node for the group, with the
    gradient written out: with ``u`` and ``v`` held fixed, as torch's parametrization
    holds them, the gradient of ``W / sigma`` is ``(G - <G, W / sigma> u v^T) / sigma``.
    """

    @staticmethod
    def forward(ctx, plan: _BatchPlan, *originals: torch.Tensor):
        torch._foreach_copy_(plan.slot_views, [original.flatten(1) for original in originals])
        w = plan.slots  # (M, R, K), zero-padded
        first = plan.norms[0]
        u, v = plan.u, plan.v
        # Products as multiply-and-sum, not bmm: on CUDA, bmm runs in TF32 by default (a
        # 10-bit mantissa), where torch's own parametrization uses mv and vdot, which
        # TF32 leaves in float32. These matrices are small; the sums cost little.
        if first.training:
            for _ in range(first.n_power_iterations):
                u = F.normalize((w * v.unsqueeze(1)).sum(2), dim=1, eps=first.eps)  # W v: (M, R)
                v = F.normalize((w * u.unsqueeze(2)).sum(1), dim=1, eps=first.eps)  # W^T u: (M, K)
            plan.write_vectors(u, v)
        else:  # kept for backward: the plan's own tensors change in place
            u, v = u.clone(), v.clone()
        sigma = (u * (w * v.unsqueeze(1)).sum(2)).sum(1)  # u . W v: (M,)
        weights = [original / s for original, s in zip(originals, sigma)]
        ctx.save_for_backward(u, v, sigma, *weights)
        return tuple(weights)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Optional[torch.Tensor]):
        u, v, sigma, *weights = ctx.saved_tensors
        out: List[Optional[torch.Tensor]] = [None]  # for the plan
        for g, w, m_u, m_v, s in zip(grads, weights, u, v, sigma):
            if g is None:
                out.append(None)
                continue
            along = (g * w).sum()  # <G, W / sigma>
            out.append((g - along * torch.outer(m_u[: w.size(0)], m_v[: w[0].numel()]).view_as(g)) / s)
        return tuple(out)
