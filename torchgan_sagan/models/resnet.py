r"""The paper's networks: residual SAGAN generator and discriminator.

The SAGAN paper's code (brain-research/self-attention-gan, ``generator.py`` and
``discriminator.py``) builds the residual nets of SNGAN and the projection
discriminator (Miyato et al. 2018; Miyato & Koyama 2018), with self-attention added.
For ``image_size = S`` and ``step_channels = d`` (the official code's ``gf_dim`` /
``df_dim``; 128x128 shown)::

    G: z -> linear -> 4x4x16d -> up-blocks 8x8x16d, 16x16x8d, 32x32x4d, [attention],
       64x64x2d, 128x128xd -> BN, ReLU, conv3x3 -> tanh
    D: x -> optimized block 64x64xd -> blocks 32x32x2d, [attention], 16x16x4d, 8x8x8d,
       4x4x16d, 4x4x16d (no downsampling) -> ReLU, sum over positions -> linear
       (+ <embed(y), h> when conditional)

- up-block: BN, ReLU, nearest upsampling, conv3x3, BN, ReLU, conv3x3; shortcut:
  upsampling and a 1x1 conv. BatchNorm is conditional on the class when
  ``num_classes > 0`` (the final BatchNorm is not, as in the official code).
- down-block: ReLU, conv3x3, ReLU, conv3x3, 2x2 average pooling; shortcut: a 1x1 conv
  and pooling (identity when neither the width nor the size changes). The first,
  "optimized" block starts with the convolution and pools its shortcut first.
- Spectral norm on every convolution, linear layer and embedding of both nets,
  attention included (the official code's ``snconv2d``/``snlinear``/``sn_embedding``).
- Attention after the block whose output has a resolution in ``attn_resolutions``;
  the default, one block at ``min(32, S // 2)``, is the official code's placement at
  128x128 (32x32 in G and D) and StudioGAN's SAGAN at 32x32 (after G's block 2 and D's
  block 1, both 16x16). At 256x256 the default stays 32x32 (BigGAN-deep puts it at 64).

Deviations: the initialization is this package's (Xavier-uniform weights, zero biases)
rather than TensorFlow's defaults; at 32x32 the widths follow the same rule (``d`` at the
image, doubling per halving) where SNGAN's CIFAR nets use a constant width.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import run_layer
from .common import inner_resolutions
from .discriminator import SAGANDiscriminator
from .generator import SAGANGenerator
from .options import takes_options

__all__ = ["SAGANResNetGenerator", "SAGANResNetDiscriminator", "GBlock", "DBlock"]


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 2H, 2W)


class GBlock(nn.Module):
    """Residual up-block of the generator: (B, C_in, H, W) -> (B, C_out, 2H, 2W).

    ``norm`` builds a BatchNorm for a number of channels (conditional ones take the
    labels)."""

    takes_labels = True

    def __init__(self, in_channels: int, out_channels: int, norm, act: nn.Module) -> None:
        super().__init__()
        self.bn1, self.bn2 = norm(in_channels), norm(out_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.act = act

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = _upsample(self.act(run_layer(self.bn1, x, labels)))  # (B, C_in, 2H, 2W)
        h = self.conv1(h)  # (B, C_out, 2H, 2W)
        h = self.conv2(self.act(run_layer(self.bn2, h, labels)))  # (B, C_out, 2H, 2W)
        return h + self.shortcut(_upsample(x))  # (B, C_out, 2H, 2W)


class DBlock(nn.Module):
    """Residual block of the discriminator: (B, C_in, H, W) -> (B, C_out, H/2, W/2), or
    (B, C_out, H, W) without ``downsample``. ``optimized``: the first block, which
    starts with its convolution (no activation on the image) and pools its shortcut
    before the 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int, act: nn.Module, *, downsample: bool = True,
                 optimized: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        learnable = downsample or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if learnable else nn.Identity()
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()
        self.act = act
        self.optimized = optimized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.optimized else self.act(x)
        h = self.pool(self.conv2(self.act(self.conv1(h))))  # (B, C_out, H/2, W/2)
        if self.optimized:
            return h + self.shortcut(self.pool(x))  # (B, C_out, H/2, W/2)
        return h + self.pool(self.shortcut(x))  # (B, C_out, H/2, W/2)


class _NoiseToMap(nn.Module):
    """The generator's first layer: z (B, Z, 1, 1) -> linear -> (B, C, b, b), b = 4 for
    the powers of two (7 for 28, 6 for 48)."""

    def __init__(self, encoding_dims: int, channels: int, base: int = 4) -> None:
        super().__init__()
        self.channels, self.base = channels, base
        self.linear = nn.Linear(encoding_dims, channels * base * base)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1)).view(z.size(0), self.channels, self.base, self.base)  # (B, C, b, b)


@takes_options("G")
class SAGANResNetGenerator(SAGANGenerator):
    """The SAGAN paper's residual generator (see the module docs), a torchgan
    ``Generator``. Takes the arguments of :class:`SAGANGenerator`; ``batchnorm`` must
    stay on (every block normalizes), ``nonlinearity`` replaces the blocks' ReLU."""

    @staticmethod
    def attention_widths(size: int, step_channels: int) -> Dict[int, int]:
        """Channels after the linear layer (4x4; b x b for a base b) and each up-block but
        the last: ``d * size / max(r, 2b)`` at resolution ``r`` (16d at 4x4 and 8x8 for
        128x128; 2d at 7x7 and 14x14 for 28)."""
        resolutions = inner_resolutions(size)
        return {r: step_channels * size // max(r, 2 * resolutions[0]) for r in resolutions}

    def _layers(self, widths: Dict[int, int], act: nn.Module, last_act: nn.Module, batchnorm: bool
                ) -> List[nn.Module]:
        if not batchnorm:
            raise ValueError("SAGANResNetGenerator: its residual blocks normalize with BatchNorm; "
                             "keep batchnorm=True")
        base = min(widths)
        layers: List[nn.Module] = [_NoiseToMap(self.encoding_dims, widths[base], base)]
        if base in self.attn_resolutions:
            layers.append(self._attention_layer(widths[base]))
        resolutions = [*sorted(widths)[1:], self.out_size]  # block outputs: 2 base, ..., out_size
        in_ch = widths[base]
        for r in resolutions:
            out_ch = widths.get(r, self.step_channels)
            layers.append(GBlock(in_ch, out_ch, self._batchnorm, act))
            if r in self.attn_resolutions:
                layers.append(self._attention_layer(out_ch))
            in_ch = out_ch
        return layers + [nn.BatchNorm2d(in_ch), act, nn.Conv2d(in_ch, self.out_channels, 3, 1, 1), last_act]


@takes_options("D")
class SAGANResNetDiscriminator(SAGANDiscriminator):
    """The SAGAN paper's residual (projection) discriminator (see the module docs), a
    torchgan ``Discriminator``. Takes the arguments of :class:`SAGANDiscriminator`;
    ``nonlinearity`` defaults to ReLU (the official code's), ``batchnorm`` must stay off.
    ``D(x, feature_matching=True)`` returns the last 4x4 features."""

    def _layers(self, widths: Dict[int, int], nonlinearity: Optional[nn.Module], batchnorm: bool
                ) -> List[nn.Module]:
        if batchnorm:
            raise ValueError("SAGANResNetDiscriminator: the residual discriminator has no BatchNorm "
                             "(spectral norm alone); keep batchnorm=False")
        act = nn.ReLU() if nonlinearity is None else nonlinearity
        layers: List[nn.Module] = []
        in_ch = self.input_dims
        for r in sorted(widths, reverse=True):  # block outputs: in_size/2, ..., base
            layers.append(DBlock(in_ch, widths[r], act, optimized=not layers))
            if r in self.attn_resolutions:
                layers.append(self._attention_layer(widths[r]))
            in_ch = widths[r]
        return layers + [DBlock(in_ch, in_ch, act, downsample=False), act]  # (B, 16d, b, b), after ReLU

    def _head(self, features: int) -> nn.Module:
        """The logit from the features summed over positions: a linear layer, (B, 16d) -> (B, 1)."""
        return nn.Linear(features, 1)

    def _logits(self, h: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        features = h.float().sum(dim=(2, 3))  # (B, 16d): global sum pooling
        logit = self._run(self.disc, features).view(h.size(0))  # (B,)
        return self.last_nonlinearity(self._projection(logit, features, labels))
