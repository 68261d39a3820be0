r"""Spectral normalization, chosen in one place: :func:`spectral_norm`, which uses
``torch.nn.utils.parametrizations.spectral_norm``. In training mode each forward runs
one power iteration; in eval mode the estimate is frozen, so evaluation changes no
state.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

__all__ = ["SPECTRAL_NORM_TYPES", "spectral_norm", "apply_spectral_norm", "spectral_norm_of", "refresh_spectral_norm"]

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
