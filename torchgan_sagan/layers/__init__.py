r"""Layers: the SAGAN self-attention block (:mod:`.attention`), spectral normalization
(:mod:`.spectral_norm`) and class-conditional BatchNorm (:mod:`.conditional`)."""

from .attention import ATTENTION_LAYOUTS, SelfAttention2d, head_widths
from .conditional import ConditionalBatchNorm2d, ConditionalSequential, run_layer
from .spectral_norm import (
    SPECTRAL_NORM_TYPES,
    apply_spectral_norm,
    refresh_spectral_norm,
    spectral_norm,
    spectral_norm_of,
)

__all__ = [
    "SelfAttention2d",
    "ConditionalBatchNorm2d",
    "ConditionalSequential",
    "ATTENTION_LAYOUTS",
    "spectral_norm",
    "apply_spectral_norm",
    "spectral_norm_of",
    "refresh_spectral_norm",
    "SPECTRAL_NORM_TYPES",
    "head_widths",
    "run_layer",
]
