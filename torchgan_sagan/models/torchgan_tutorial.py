"""torchgan's SAGAN tutorial network, built from torchgan's own layers, for comparisons.

The networks of torchgan's "Tutorial 4. Self Attention GAN" use
``torchgan.layers.SpectralNorm2d`` and ``torchgan.layers.SelfAttention2d`` (softmax over
queries, explicit N x N map), BatchNorm and LeakyReLU(0.2) in both nets, and a tanh on
the discriminator's output; they are trained with the Wasserstein loss and weight
clipping. These classes rebuild them, with the image size and channels as arguments
(64x64 RGB is the tutorial's own), so that benchmarks and quality comparisons can put
them next to this package's nets:

    G: z -> 4x4x8d -> ... -> (S/4)x(S/4) -> attn -> (S/2)x(S/2) -> attn -> SxS, tanh
    D: SxS -> (S/2)x(S/2)xd -> ... -> 8x8 -> attn -> 4x4 -> attn -> 1, tanh

As in the tutorial, G's last inner block has no activation and D's has none either.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
from torch.optim import Adam
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d
from torchgan.layers import SpectralNorm2d
from torchgan.losses import WassersteinDiscriminatorLoss, WassersteinGeneratorLoss
from torchgan.models import Discriminator, Generator

from ..checks import check_image_size, check_positive_int

__all__ = ["TutorialGenerator", "TutorialDiscriminator", "tutorial_network_params", "tutorial_losses"]


class TutorialGenerator(Generator):
    """torchgan's tutorial SAGAN generator (64x64 RGB with the defaults)."""

    def __init__(self, encoding_dims: int = 100, out_size: int = 64, out_channels: int = 3,
                 step_channels: int = 64) -> None:
        super().__init__(check_positive_int("encoding_dims", encoding_dims), "none")
        check_image_size("out_size", out_size, powers_of_two=True)
        check_positive_int("out_channels", out_channels)
        check_positive_int("step_channels", step_channels)
        blocks = out_size.bit_length() - 4  # upsamplings between 4x4 and S/2: 3 at 64
        d = step_channels * 2**blocks
        layers: List[nn.Module] = [
            SpectralNorm2d(nn.ConvTranspose2d(encoding_dims, d, 4, 1, 0, bias=True)),
            nn.BatchNorm2d(d),
            nn.LeakyReLU(0.2),
        ]
        for i in range(blocks):
            last = i == blocks - 1
            layers += [SpectralNorm2d(nn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=True)), nn.BatchNorm2d(d // 2)]
            if not last:
                layers.append(nn.LeakyReLU(0.2))
            if i >= blocks - 2:
                layers.append(TorchganSelfAttention2d(d // 2))
            d //= 2
        layers += [SpectralNorm2d(nn.ConvTranspose2d(d, out_channels, 4, 2, 1, bias=True)), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.view(-1, z.size(1), 1, 1))


class TutorialDiscriminator(Discriminator):
    """torchgan's tutorial SAGAN discriminator (64x64 RGB with the defaults)."""

    def __init__(self, in_size: int = 64, in_channels: int = 3, step_channels: int = 64) -> None:
        super().__init__(check_positive_int("in_channels", in_channels), "none")
        check_image_size("in_size", in_size, powers_of_two=True)
        check_positive_int("step_channels", step_channels)
        blocks = in_size.bit_length() - 3  # downsamplings from S to 4x4: 4 at 64
        d = step_channels
        layers: List[nn.Module] = []
        in_ch = in_channels
        for i in range(blocks):
            last = i == blocks - 1
            layers += [SpectralNorm2d(nn.Conv2d(in_ch, d, 4, 2, 1, bias=True)), nn.BatchNorm2d(d)]
            if not last:
                layers.append(nn.LeakyReLU(0.2))
            if i >= blocks - 2:
                layers.append(TorchganSelfAttention2d(d))
            in_ch, d = d, d * 2
        layers += [SpectralNorm2d(nn.Conv2d(in_ch, 1, 4, 1, 0, bias=True)), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, feature_matching: bool = False) -> torch.Tensor:
        return self.model(x).view(x.size(0))


def tutorial_network_params(*, encoding_dims: int = 100, image_size: int = 64, channels: int = 3,
                            step_channels: int = 32, g_lr: float = 1e-4, d_lr: float = 4e-4) -> dict:
    """torchgan's ``models`` dict for the tutorial nets, with the tutorial's Adam
    (TTUR learning rates, betas (0, 0.999)); the defaults are the tutorial's own."""
    betas = (0.0, 0.999)
    return {
        "generator": {
            "name": TutorialGenerator,
            "args": {"encoding_dims": encoding_dims, "out_size": image_size,
                     "out_channels": channels, "step_channels": step_channels},
            "optimizer": {"name": Adam, "args": {"lr": g_lr, "betas": betas}},
        },
        "discriminator": {
            "name": TutorialDiscriminator,
            "args": {"in_size": image_size, "in_channels": channels, "step_channels": step_channels},
            "optimizer": {"name": Adam, "args": {"lr": d_lr, "betas": betas}},
        },
    }


def tutorial_losses() -> list:
    """The tutorial's losses: Wasserstein with weight clipping at 0.01."""
    return [WassersteinGeneratorLoss(), WassersteinDiscriminatorLoss(clip=(-0.01, 0.01))]
