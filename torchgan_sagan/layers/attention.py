r"""The SAGAN self-attention block, :class:`SelfAttention2d`."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_choice, check_positive_int
from .spectral_norm import apply_spectral_norm, normalized_weights

__all__ = ["SelfAttention2d", "ATTENTION_LAYOUTS", "FUSED_MODES", "fused_mode", "fused_kernel_pays",
           "head_widths"]

#: ``"torchgan"``: the layout of ``torchgan.layers.SelfAttention2d`` (value keeps all
#: C channels, no pooling, no output projection; same parameter names, so its
#: ``state_dict`` loads). ``"official"``: the layout of the paper's code (value at
#: C/2, keys and values max-pooled 2x2, a 1x1 output projection back to C).
ATTENTION_LAYOUTS = ("torchgan", "official")

#: How the layer computes ``softmax(q k^T) v``: ``"on"``, PyTorch's fused kernel (no
#: N x N_k map, first derivatives only); ``"off"``, the explicit map (differentiable
#: twice, as gradient penalties need); ``"auto"``, whichever :func:`fused_kernel_pays`
#: picks for the device and the map's size.
FUSED_MODES = ("auto", "on", "off")

#: On a CPU the explicit map is used up to this many entries per image (N * N_k) and
#: the fused kernel above: ``python benchmarks/attention.py --impls ours-official
#: ours-official-explicit`` and ``benchmarks/attention_cost.py`` (docs/performance.md)
#: measured where the fused kernel starts to win.
CPU_EXPLICIT_MAX_ENTRIES = 4096


def fused_mode(fused: Union[bool, str]) -> str:
    """``True``/``False`` (the older spelling) or one of :data:`FUSED_MODES` -> the mode."""
    if isinstance(fused, bool):
        return "on" if fused else "off"
    return check_choice("fused", fused, FUSED_MODES)


def fused_kernel_pays(device: torch.device, n_queries: int, n_keys: int) -> bool:
    """What ``"auto"`` picks: on a GPU always the fused kernel (it never builds the map,
    which is what decides memory there); on a CPU the explicit map up to
    :data:`CPU_EXPLICIT_MAX_ENTRIES` entries per image, where building it is cheap."""
    if device.type != "cpu":
        return True
    return n_queries * n_keys > CPU_EXPLICIT_MAX_ENTRIES


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def head_widths(device: torch.device, dtype: torch.dtype, qk_width: int, v_width: int) -> Tuple[int, int]:
    """The widths (q and k, v) that the fused attention kernel for ``device`` and
    ``dtype`` takes, from the layer's own; zero columns fill the difference.

    - CUDA, float32: the memory-efficient kernel takes two widths, each a multiple of 4
      (its GEMM alignment on tensor-core GPUs; 8 in half precision). Narrower, as the
      conditional digits preset's query width 2, and ``scaled_dot_product_attention``
      silently falls back to the math kernel, which builds the N x N_k map.
    - CUDA, half precision: flash attention needs one width, a multiple of 8.
    - CPU (flash) and other devices: one width, the larger of the two.

    Padding q and k to 4 costs less than padding them to the value width (4x the q.k
    work for the official layout, 8x for torchgan's)."""
    if device.type == "cuda":
        if dtype == torch.float32:
            return _round_up(qk_width, 4), _round_up(v_width, 4)
        width = _round_up(max(qk_width, v_width), 8)
        return width, width
    width = max(qk_width, v_width)
    return width, width


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` over keys, without materializing the (N x N_k) map.

    q: (B, N, D_qk), k: (B, N_k, D_qk), v: (B, N_k, D_v) -> (B, N, D_v).

    q and k, and v, are widened with zero columns to what the kernel takes
    (:func:`head_widths`; else ``scaled_dot_product_attention`` silently falls back to
    its math kernel, which builds the map): that leaves every dot product q_i . k_j and
    every output column unchanged. The kernels also need unit stride along the
    channels; a slice along them is copied only where it lacks it.
    """
    d_v = v.size(-1)
    qk_width, v_width = head_widths(q.device, q.dtype, q.size(-1), d_v)

    def heads(t: torch.Tensor, width: int) -> torch.Tensor:
        if t.size(-1) != width:
            t = F.pad(t, (0, width - t.size(-1)))
        unit_stride = t.device.type == "cpu" and t.stride(-1) == 1  # CUDA kernels also want aligned rows
        return (t if unit_stride else t.contiguous()).unsqueeze(1)

    # (B, 1, N, D_qk'), (B, 1, N_k, D_qk'), (B, 1, N_k, D_v')
    q, k, v = heads(q, qk_width), heads(k, qk_width), heads(v, v_width)
    # SAGAN uses raw dot products: no 1/sqrt(d) temperature.
    o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, D_v')
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
    value has C/2 channels, ``P`` is a 2x2 max-pool (N_k = ceil(H/2) * ceil(W/2): an
    odd row or column is pooled on its own, not dropped) and ``W_o`` maps C/2 back to
    C, as in the paper's code; use ``spectral_norm=True`` there, as the paper does.

    The three projections run as one product with their weights stacked, each weight
    spectrally normalized on its own (its own power iteration and sigma), and keys and
    values are pooled in one call: the same function as three 1x1 convolutions, with
    fewer small kernels. The parameters stay in ``query``, ``key``, ``value`` and
    ``out``, so ``state_dict`` keys are those of torchgan's layer and of earlier
    versions of this one.

    ``softmax(q k^T) v`` runs either explicitly, building the (N x N_k) map, or
    through ``torch.nn.functional.scaled_dot_product_attention``, which builds none
    (see :func:`_fused_attention`); ``fused`` chooses (:data:`FUSED_MODES`).
    PyTorch's fused kernels have no second derivative, so a discriminator trained with
    a gradient penalty (WGAN-GP, DRAGAN), which differentiates its gradient, needs
    ``fused="off"``.

    Args:
        input_dims: channels C of the input.
        output_dims: channels of the query and key projections; ``C // 8`` if ``None``.
        return_attn: return ``(out, attn)`` with ``attn`` of shape (B, N, N_k), rows
            summing to 1. This builds the map explicitly.
        layout: ``"torchgan"`` or ``"official"`` (see above).
        spectral_norm: spectrally normalize the 1x1 convolutions.
        fused: ``"auto"`` (default), ``"on"`` or ``"off"``; ``True``/``False`` mean
            ``"on"``/``"off"``.
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: Optional[int] = None,
        return_attn: bool = False,
        *,
        layout: str = "torchgan",
        spectral_norm: bool = False,
        fused: Union[bool, str] = "auto",
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
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if official else nn.Identity()
        self.out = nn.Conv2d(value_dims, input_dims, 1, bias=False) if official else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(1))
        if spectral_norm:
            apply_spectral_norm(self)

    @property
    def fused(self) -> str:
        """``"auto"``, ``"on"`` or ``"off"``; set it with any of those or a bool."""
        return self._fused

    @fused.setter
    def fused(self, value: Union[bool, str]) -> None:
        self._fused = fused_mode(value)

    def extra_repr(self) -> str:
        return (
            f"input_dims={self.input_dims}, qk_dims={self.qk_dims}, "
            f"value_dims={self.value_dims}, layout={self.layout!r}, fused={self.fused!r}"
        )

    def uses_fused_kernel(self, x: torch.Tensor) -> bool:
        """Whether a forward on ``x`` (without the map asked for) takes the fused kernel."""
        if self.fused != "auto":
            return self.fused == "on"
        h, w = x.shape[-2:]
        n_keys = -(-h // 2) * -(-w // 2) if self.layout == "official" else h * w
        return fused_kernel_pays(x.device, h * w, n_keys)

    def _projections(self, x: torch.Tensor, weights) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, N, C_qk), k (B, N_k, C_qk), v (B, N_k, C_v) of ``x`` (B, C, H, W), given
        the normalized weights of the query, key and value convolutions."""
        b, _, h, w = x.shape
        d = self.qk_dims
        convs = (self.query, self.key, self.value)
        weight = torch.cat(weights).flatten(1)  # (2 C_qk + C_v, C)
        # Positions first: q, k and v come out as the (B, N, width) the products take.
        # bmm reads the transposed view of x as it is, where matmul would first copy it to
        # fold B into N (and copy the gradient back likewise).
        qkv = torch.bmm(x.flatten(2).transpose(1, 2), weight.t().expand(b, -1, -1))  # (B, N, 2 C_qk + C_v)
        if self.query.bias is not None:
            bias = torch.cat([conv.bias for conv in convs])  # (2 C_qk + C_v,)
            qkv = qkv + bias.to(qkv.dtype)
        kv = qkv[..., d:].unflatten(1, (h, w)).permute(0, 3, 1, 2)  # (B, C_qk + C_v, H, W), channels-last
        kv = self.pool(kv).flatten(2).transpose(1, 2)  # (B, N_k, C_qk + C_v): one pooling for both
        return qkv[..., :d], kv[..., :d], kv[..., d:]

    def forward(self, x: torch.Tensor, return_attn: Optional[bool] = None):
        """Apply the block; ``return_attn`` overrides the constructor's choice."""
        if return_attn is None:
            return_attn = self.return_attn
        if x.dim() != 4 or x.size(1) != self.input_dims:
            raise ValueError(
                f"SelfAttention2d(input_dims={self.input_dims}) expects input of shape "
                f"(B, {self.input_dims}, H, W), got {tuple(x.shape)}"
            )
        b, c, h, w = x.shape
        if self.layout == "official" and (h < 2 or w < 2):
            raise ValueError(
                f"the official layout max-pools keys 2x2 and needs H, W >= 2, got {h}x{w}"
            )
        convs = (self.query, self.key, self.value) + ((self.out,) if self.layout == "official" else ())
        weights = None
        if all(isinstance(m, nn.Conv2d) for m in convs):
            # Each projection's own spectral norm (one power iteration each in training),
            # computed for all of them at once.
            weights = normalized_weights(convs)
            q, k, v = self._projections(x, weights[:3])  # (B, N, C_qk), (B, N_k, C_qk), (B, N_k, C_v)
        else:  # projections replaced by other modules (torchgan's SpectralNorm2d wrappers): call them
            q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C_qk)
            k = self.pool(self.key(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_qk)
            v = self.pool(self.value(x)).flatten(2).transpose(1, 2)  # (B, N_k, C_v)
        if return_attn or not self.uses_fused_kernel(x):
            attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, N, N_k)
            o = attn @ v  # (B, N, C_v)
        else:
            o = _fused_attention(q, k, v)  # (B, N, C_v)
        if self.layout == "official" and weights is not None:
            # gamma scales the (C, C_v) projection rather than the (B, C, H, W) map.
            out_weight = self.gamma * weights[3].flatten(1)  # (C, C_v)
            o = torch.bmm(o, out_weight.t().expand(b, -1, -1))  # (B, N, C); bmm, as above, for the gradient's view
        else:
            if self.layout == "official":
                o = self.out(o.transpose(1, 2).reshape(b, self.value_dims, h, w)).flatten(2).transpose(1, 2)
            # in the activations' dtype: under bf16 autocast a float32 gamma would turn
            # everything after this block back into float32.
            o = self.gamma.to(o.dtype) * o  # (B, N, C)
        out = x + o.transpose(1, 2).unflatten(2, (h, w))  # (B, C, H, W); the view is channels-last
        if return_attn:
            return out, attn
        return out
