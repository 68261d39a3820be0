r"""Layers: the SAGAN self-attention block, class-conditional BatchNorm, and the
spectral-norm helpers.

Spectral normalization is chosen in one place, :func:`spectral_norm`, which uses
``torch.nn.utils.parametrizations.spectral_norm``. In training mode each forward runs
one power iteration; in eval mode the estimate is frozen, so evaluation changes no
state.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .checks import check_choice, check_positive_int

__all__ = [
    "SelfAttention2d",
    "ConditionalBatchNorm2d",
    "ConditionalSequential",
    "ATTENTION_LAYOUTS",
    "spectral_norm",
    "apply_spectral_norm",
    "spectral_norm_of",
    "refresh_spectral_norm",
]

#: Layer types that :func:`apply_spectral_norm` normalizes.
SPECTRAL_NORM_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)

#: ``"torchgan"``: the layout of ``torchgan.layers.SelfAttention2d`` (value keeps all
#: C channels, no pooling, no output projection; same parameter names, so its
#: ``state_dict`` loads). ``"official"``: the layout of the paper's code (value at
#: C/2, keys and values max-pooled 2x2, a 1x1 output projection back to C).
ATTENTION_LAYOUTS = ("torchgan", "official")


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


def needs_one_head_width(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused attention kernel for ``device`` and ``dtype`` needs query, key
    and value of one width: flash attention does (the CPU's, and CUDA's in half
    precision); CUDA's memory-efficient kernel, used in float32, does not, and padding
    there would only add q.k work (4x for the official layout, 8x for torchgan's)."""
    return not (device.type == "cuda" and dtype == torch.float32)


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` over keys, without materializing the (N x N_k) map.

    q: (B, N, D_qk), k: (B, N_k, D_qk), v: (B, N_k, D_v) -> (B, N, D_v).

    Where the fused kernel needs one head width (:func:`needs_one_head_width`; else
    ``scaled_dot_product_attention`` silently falls back to its math kernel, which
    builds the map), zero columns are appended to q and k, or v: that leaves every dot
    product q_i . k_j and every output column unchanged. The kernels also need unit
    stride along the channels, hence ``contiguous``.
    """
    d_v = v.size(-1)
    same = needs_one_head_width(q.device, q.dtype)
    width = max(q.size(-1), d_v)

    def heads(t: torch.Tensor) -> torch.Tensor:
        if same:
            t = F.pad(t, (0, width - t.size(-1)))
        return t.contiguous().unsqueeze(1)

    q, k, v = heads(q), heads(k), heads(v)  # (B, 1, N, D), (B, 1, N_k, D), (B, 1, N_k, D)
    # SAGAN uses raw dot products: no 1/sqrt(d) temperature.
    o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, D)
    return o.squeeze(1)[..., :d_v]  # (B, N, D_v)


class SelfAttention2d(nn.Module):
    r"""Self-attention over the spatial positions of a feature map.

    From "Self-Attention Generative Adversarial Networks" (Zhang et al., 2018). For
    ``x`` of shape (B, C, H, W) with N = H*W query positions and N_k key positions:

    .. math::
        q = W_q x,\quad k = P(W_k x),\quad v = P(W_v x) \\
        \beta_{ij} = \frac{\exp(q_i \cdot k_j)}{\sum_{j'} \exp(q_i \cdot k_{j'})} \\
        o_i = \sum_j \beta_{ij} v_j,\qquad y = x + \gamma\, W_o o

    Each output position's weights :math:`\beta_{i\cdot}` sum to 1 over the keys, as
    in the paper. (``torchgan.layers.SelfAttention2d`` normalizes over the queries.)
    :math:`\gamma` starts at 0, so the block starts as the identity.

    With ``layout="torchgan"`` (default) ``P`` and ``W_o`` are identities and the
    value keeps C channels: the layer replaces ``torchgan.layers.SelfAttention2d``
    under the same constructor and parameter names. With ``layout="official"`` the
    value has C/2 channels, ``P`` is a 2x2 max-pool (N_k = N/4) and ``W_o`` maps C/2
    back to C, as in the paper's code; use ``spectral_norm=True`` there, as the paper
    does.

    Unless the map is asked for, the layer calls
    ``torch.nn.functional.scaled_dot_product_attention`` so that no N x N_k tensor is
    built (see :func:`_fused_attention`). PyTorch's fused kernels have no second
    derivative, so a discriminator trained with a gradient penalty (WGAN-GP, DRAGAN),
    which differentiates its gradient, needs ``fused=False``: the explicit
    ``softmax(q k^T) v``, which builds the map but can be differentiated twice.

    Args:
        input_dims: channels C of the input.
        output_dims: channels of the query and key projections; ``C // 8`` if ``None``.
        return_attn: return ``(out, attn)`` with ``attn`` of shape (B, N, N_k), rows
            summing to 1. This builds the map explicitly.
        layout: ``"torchgan"`` or ``"official"`` (see above).
        spectral_norm: spectrally normalize the 1x1 convolutions.
        fused: use the fused kernel (no N x N_k map, first derivatives only).
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: Optional[int] = None,
        return_attn: bool = False,
        *,
        layout: str = "torchgan",
        spectral_norm: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("input_dims", input_dims)
        self.layout = check_choice("layout", layout, ATTENTION_LAYOUTS)
        if output_dims is None:
            output_dims = input_dims // 8
            if output_dims < 1:
                raise ValueError(
                    f"input_dims={input_dims} is too small for self-attention: the "
                    f"query/key width is input_dims // 8 = 0. Use input_dims >= 8 or "
                    f"pass output_dims explicitly"
                )
        check_positive_int("output_dims", output_dims)
        official = layout == "official"
        value_dims = input_dims // 2 if official else input_dims
        if value_dims < 1:
            raise ValueError(
                f"input_dims={input_dims} is too small for the official layout, whose "
                f"value width is input_dims // 2; use input_dims >= 2"
            )
        bias = not official
        self.input_dims = input_dims
        self.qk_dims = output_dims
        self.value_dims = value_dims
        self.return_attn = return_attn
        self.fused = fused
        self.query = nn.Conv2d(input_dims, output_dims, 1, bias=bias)
        self.key = nn.Conv2d(input_dims, output_dims, 1, bias=bias)
        self.value = nn.Conv2d(input_dims, value_dims, 1, bias=bias)
        self.pool = nn.MaxPool2d(2) if official else nn.Identity()
        self.out = nn.Conv2d(value_dims, input_dims, 1, bias=False) if official else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(1))
        if spectral_norm:
            apply_spectral_norm(self)

    def extra_repr(self) -> str:
        return (
            f"input_dims={self.input_dims}, qk_dims={self.qk_dims}, "
            f"value_dims={self.value_dims}, layout={self.layout!r}, fused={self.fused}"
        )

    def forward(self, x: torch.Tensor, return_attn: Optional[bool] = None):
        """Apply the block; ``return_attn`` overrides the constructor's choice."""
        if return_attn is None:
            return_attn = self.return_attn
        if x.dim() != 4 or x.size(1) != self.input_dims:
            raise ValueError(
                f"SelfAttention2d(input_dims={self.input_dims}) expects input of shape "
                f"(B, {self.input_dims}, H, W), got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        if self.layout == "official" and (h < 2 or w < 2):
            raise ValueError(
                f"the official layout max-pools keys 2x2 and needs H, W >= 2, got {h}x{w}"
            )
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C_qk)
        k = self.pool(self.key(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_qk)
        v = self.pool(self.value(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_v)
        if return_attn or not self.fused:
            attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, N, N_k)
            o = attn @ v  # (B, N, C_v)
        else:
            o = _fused_attention(q, k, v)  # (B, N, C_v)
        o = o.transpose(1, 2).reshape(b, self.value_dims, h, w)  # (B, C_v, H, W)
        o = self.out(o)  # (B, C, H, W)
        # gamma in the activations' dtype: under bf16 autocast a float32 gamma would
        # turn everything after this block back into float32.
        out = x + self.gamma.to(o.dtype) * o  # (B, C, H, W)
        if return_attn:
            return out, attn
        return out


class ConditionalBatchNorm2d(nn.Module):
    r"""BatchNorm whose scale and shift depend on the class: conditional BatchNorm.

    Used by the class-conditional SAGAN generator (the paper's ImageNet model, after
    de Vries et al. 2017 and Miyato & Koyama 2018). The features are normalized with
    shared batch statistics, then

    .. math:: y = \gamma_{c} \odot \hat{x} + \beta_{c}

    with one gain and one bias vector per class ``c``, starting at 1 and 0 (so at
    initialization the layer is a plain BatchNorm). The per-class tables are plain
    parameters, not spectrally normalized.

    Args:
        num_features: channels C of the input (B, C, H, W).
        num_classes: number of classes; labels are integers in ``[0, num_classes)``.
    """

    takes_labels = True

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_features = check_positive_int("num_features", num_features)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Parameter(torch.ones(num_classes, num_features))
        self.bias = nn.Parameter(torch.zeros(num_classes, num_features))

    def reset_parameters(self) -> None:
        self.bn.reset_running_stats()
        with torch.no_grad():
            self.gain.fill_(1.0)
            self.bias.zero_()

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_classes={self.num_classes}"

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)  # (B, C, H, W)
        gain = self.gain[labels][:, :, None, None].to(h.dtype)  # (B, C, 1, 1), in the activations' dtype
        bias = self.bias[labels][:, :, None, None].to(h.dtype)  # (B, C, 1, 1)
        return h * gain + bias


def run_layer(layer: nn.Module, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """Run one layer: a layer with ``takes_labels`` (conditional BatchNorm, residual
    blocks) gets the labels too, any other only ``x``."""
    return layer(x, labels) if getattr(layer, "takes_labels", False) else layer(x)


class ConditionalSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``labels`` to its layers with ``takes_labels``
    (:func:`run_layer`): ``forward(x, labels)``."""

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self:
            x = run_layer(layer, x, labels)
        return x
