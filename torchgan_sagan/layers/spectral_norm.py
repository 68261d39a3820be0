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
    singular vector or value. A handful of small kernels replace several per weight,
    which is what small layers such as the attention's 1x1 projections spend most on.
    Otherwise (a module without it, or with other parametrizations) the weights are read
    one by one. Inside ``torch.nn.utils.parametrize.cached()`` (several calls of a net
    with one power iteration: D on real, then on fake images) the batch's weights go
    into that cache, under the key ``module.weight`` reads them by, and later calls
    take them from there.
    """
    norms = [_plain_spectral_norm(m) for m in modules]
    if any(sn is None for sn in norms) or len({(sn.eps, sn.n_power_iterations, sn.training) for sn in norms}) != 1:
        return [m.weight for m in modules]
    cache = parametrize._cache if parametrize._cache_enabled else None
    if cache is not None:
        cached = [cache.get((id(m), "weight")) for m in modules]
        if all(w is not None for w in cached):
            return cached
        if any(w is not None for w in cached):
            return [m.weight for m in modules]
    weights = _normalize_in_one_batch(modules, norms)
    if cache is not None:
        cache.update({(id(m), "weight"): w for m, w in zip(modules, weights)})
    return weights


def _pad_to(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """``t`` with zeros appended up to ``sizes`` (no copy where it has them already)."""
    if tuple(t.shape) == sizes:
        return t
    return F.pad(t, [p for n, size in zip(reversed(t.shape), reversed(sizes)) for p in (0, size - n)])


def _normalize_in_one_batch(modules: Sequence[nn.Module], norms: Sequence[nn.Module]) -> List[torch.Tensor]:
    originals = [m.parametrizations.weight.original for m in modules]
    mats = [w.flatten(1) for w in originals]  # (r_i, k_i)
    rows, cols = max(w.size(0) for w in mats), max(w.size(1) for w in mats)
    stacked = torch.stack([_pad_to(w, rows, cols) for w in mats])  # (M, R, K)
    u = torch.stack([_pad_to(sn._u, rows) for sn in norms])  # (M, R)
    v = torch.stack([_pad_to(sn._v, cols) for sn in norms])  # (M, K)
    first = norms[0]
    if first.training:
        with torch.no_grad():
            w = stacked.detach()
            for _ in range(first.n_power_iterations):
                u = F.normalize(torch.bmm(w, v.unsqueeze(2)).squeeze(2), dim=1, eps=first.eps)  # (M, R)
                v = F.normalize(torch.bmm(u.unsqueeze(1), w).squeeze(1), dim=1, eps=first.eps)  # (M, K)
            buffers = [sn._u for sn in norms] + [sn._v for sn in norms]
            torch._foreach_copy_(buffers, [m_u[: b.numel()] for m_u, b in zip(u, buffers)] +
                                 [m_v[: b.numel()] for m_v, b in zip(v, buffers[len(norms):])])
    sigma = (u * torch.bmm(stacked, v.unsqueeze(2)).squeeze(2)).sum(1)  # (M,)
    return [w / s for w, s in zip(originals, sigma)]
