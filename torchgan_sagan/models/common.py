"""What the SAGAN generator and discriminator share: feature widths, attention
placement, weight initialization, the option groups they run with, and the
attention-recording pass behind ``attention_maps``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ..checks import check_attention, check_positive_int, image_base
from ..layers import (
    ConditionalBatchNorm2d,
    SelfAttention2d,
    refresh_spectral_norm,
    run_layer,
)
from .options import AttentionOptions, SpeedOptions, split_options

__all__ = [
    "default_attn_resolutions",
    "feature_widths",
    "inner_resolutions",
    "init_weights",
    "run_recording_attention",
    "unwrap",
    "NetOptionsMixin",
]


def default_attn_resolutions(image_size: int) -> Tuple[int, ...]:
    """One attention block at the largest feature map up to 32x32: 32x32 for images of
    64 and more, ``image_size // 2`` for smaller ones (24x24 for 96, 14x14 for 28).

    The paper's ablation (Table 1) found attention on the larger feature maps (32, 64)
    better than on the small ones (8, 16).
    """
    return (max(r for r in inner_resolutions(image_size) if r <= 32),)


def inner_resolutions(image_size: int) -> List[int]:
    """The nets' inner feature-map resolutions: the size's base (4 for powers of two,
    7 for 28, 6 for 48; :func:`~torchgan_sagan.checks.image_base`), doubling up to
    ``image_size // 2``. G starts at the base and doubles; D halves down to it."""
    r, resolutions = image_base(image_size), []
    while r < image_size:
        resolutions.append(r)
        r *= 2
    return resolutions


def feature_widths(image_size: int, step_channels: int) -> Dict[int, int]:
    """Channels of the inner feature maps by resolution (:func:`inner_resolutions`).

    The same in G and D: ``step_channels`` at ``image_size // 2``, doubling at every
    halving of the resolution.
    """
    return {r: step_channels * image_size // (2 * r) for r in inner_resolutions(image_size)}


def run_recording_attention(
    layers: Sequence[nn.Module], x: torch.Tensor, labels: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
    """Run ``layers`` in order, collecting each attention block's map by resolution."""
    maps: Dict[int, torch.Tensor] = {}
    for layer in layers:
        if isinstance(layer, SelfAttention2d):
            x, maps[x.size(-1)] = layer(x, return_attn=True)
        else:
            x = run_layer(layer, x, labels)
    return x, maps


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside an ``nn.DataParallel`` (which torchgan's ``ParallelTrainer``
    puts around each child of a net), or ``module`` itself."""
    return module.module if isinstance(module, nn.DataParallel) else module


def init_weights(net: nn.Module) -> None:
    """Xavier-uniform weights, zero biases, (conditional) BatchNorm at identity; then
    re-estimate SN.

    Spectrally normalized layers are initialized through their unnormalized
    ``original`` tensor (writing to ``module.weight`` would only change a temporary).
    The attention gain ``gamma`` keeps its initial 0.
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
                weight = (
                    m.parametrizations.weight.original
                    if parametrize.is_parametrized(m, "weight")
                    else m.weight
                )
                nn.init.xavier_uniform_(weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ConditionalBatchNorm2d):
                m.reset_parameters()
    refresh_spectral_norm(net)


class NetOptionsMixin:
    """The option groups of a net (:mod:`torchgan_sagan.models.options`): ``self.attention``
    and ``self.speed``, plus the net's own groups, returned by :meth:`_take_options`."""

    attention: AttentionOptions
    speed: SpeedOptions

    def _setup(self, size: int, step_channels: int, num_classes: int, options: Dict[str, Any]
               ) -> Tuple[Dict[int, int], Dict[type, Any]]:
        """Record the shared arguments and options of a net of ``size`` x ``size``
        images; return its feature widths by resolution and its option groups."""
        groups = split_options(self, options)  # type: ignore[arg-type]
        self.attention = groups[AttentionOptions]
        self.speed = groups[SpeedOptions]
        self.num_classes = num_classes
        self.step_channels = check_positive_int("step_channels", step_channels)
        widths = self.attention_widths(size, step_channels)
        resolutions = self.attention.attn_resolutions
        if resolutions is None:
            resolutions = default_attn_resolutions(size)
        self.attn_resolutions = check_attention(type(self).__name__, resolutions, widths, step_channels)
        return widths, groups

    @staticmethod
    def attention_widths(size: int, step_channels: int) -> Dict[int, int]:
        """Channels of the feature maps after which attention may go, by resolution."""
        return feature_widths(size, step_channels)

    def _finish(self) -> None:
        """Initialize the weights, then apply the speed options (the last step:
        compiling wraps the layer stack)."""
        self._weight_initializer()  # type: ignore[attr-defined]
        self.speed.prepare(self, self.model)  # type: ignore[arg-type, attr-defined]

    @property
    def channels_last(self) -> bool:
        return self.speed.channels_last

    @property
    def amp(self) -> Optional[str]:
        return self.speed.amp

    def _run(self, layers: nn.Module, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        return self.speed.run(layers, x, *labels)

    def _attention_layer(self, channels: int) -> SelfAttention2d:
        return SelfAttention2d(channels, layout=self.attention.attn_layout, fused=self.attention.attn_fused)
