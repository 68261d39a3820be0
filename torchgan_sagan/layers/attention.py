r"""The SAGAN self-attention block, :class:`SelfAttention2d`."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_choice, check_positive_int
from .spectral_norm import apply_spectral_norm

__all__ = ["SelfAttention2d", "ATTENTION_LAYOUTS", "needs_one_head_width"]

#: ``"torchgan"``: the layout of ``torchgan.layers.SelfAttention2d`` (value keeps all
#: C channels, no pooling, no output projection; same parameter names, so its
#: ``state_dict`` loads). ``"official"``: the layout of the paper's code (value at
#: C/2, keys and values max-pooled 2x2, a 1x1 output projection back to C).
ATTENTION_LAYOUTS = ("torchgan", "official")



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
