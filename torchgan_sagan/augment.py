r"""Differentiable augmentation (DiffAugment) for the discriminator's inputs.

From "Differentiable Augmentation for Data-Efficient GAN Training" (Zhao et al.,
2020): the same random transformations are applied to real and to generated images
every time the discriminator sees them, in D's step and in G's step alike. Every
transformation is built from indexing, additions and multiplications, so gradients
reach the generator through it. With little data this keeps D from memorizing the
training set.

Transformations (the paper's, re-implemented here), each drawn per image:

- ``color``: brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the
  channel mean by U(0, 2)), contrast (scale the deviation from the image mean by
  U(0.5, 1.5));
- ``translation``: shift by up to 1/8 of the height and width, filling with zeros;
- ``cutout``: zero a square of half the height and width at a random place.

:class:`DiffAugment` applies a policy (a comma-separated list of these) in training
mode only; :class:`~torchgan_sagan.models.SAGANDiscriminator` takes it as its
``diffaugment`` argument, so torchgan's losses need no change.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_policy

__all__ = ["DiffAugment", "diff_augment", "AUGMENTATIONS", "parse_policy"]


def _uniform(x: torch.Tensor, shape: Tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, dtype=x.dtype, device=x.device) * (high - low) + low


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation and contrast per image; x: (B, C, H, W)."""
    b = x.size(0)
    x = x + _uniform(x, (b, 1, 1, 1), -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    x = (x - mean) * _uniform(x, (b, 1, 1, 1), 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * _uniform(x, (b, 1, 1, 1), 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125, *, pixels: Optional[int] = None, fill: float = 0.0,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size (or up to ``pixels``), ``fill``
    coming in at the edges; ``generator`` draws the shifts."""
    b, _, h, w = x.shape
    sy, sx = (pixels, pixels) if pixels is not None else (int(h * ratio + 0.5), int(w * ratio + 0.5))
    # Offsets into the padded image, 0 ... 2s: (B, 2) rows and columns.
    if sy == sx:
        offsets = torch.randint(0, 2 * sy + 1, (b, 2), generator=generator, device=x.device)
    else:
        offsets = torch.stack([torch.randint(0, 2 * s + 1, (b,), generator=generator, device=x.device)
                               for s in (sy, sx)], dim=1)
    rows = torch.arange(h, device=x.device) + offsets[:, :1]  # (B, H) rows of the padded image
    cols = torch.arange(w, device=x.device) + offsets[:, 1:]  # (B, W)
    padded = F.pad(x, (sx, sx, sy, sy), value=fill)  # (B, C, H + 2sy, W + 2sx)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts them first: (B, H, W, C).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a (ratio*H) x (ratio*W) square per image, centred anywhere in the image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (b, 1, 1), device=x.device) - ch // 2  # centre row - half
    left = torch.randint(0, w, (b, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None] - top  # (B, H, 1) rows from the top edge
    xs = torch.arange(w, device=x.device)[None, None, :] - left  # (B, 1, W)
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


#: The transformations a policy may name, in the order they are applied.
AUGMENTATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(policy: Optional[str]) -> Tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``None`` or ``""`` -> ``()``.

    Raises ValueError naming the known transformations for anything else.
    """
    return check_policy(policy, tuple(AUGMENTATIONS))


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Apply the transformations of ``policy`` to a batch (B, C, H, W), freshly drawn."""
    for name in parse_policy(policy):
        x = AUGMENTATIONS[name](x)
    return x


class DiffAugment(nn.Module):
    """DiffAugment as a layer: augments in training mode, the identity in eval mode
    or with an empty policy."""

    def __init__(self, policy: Optional[str] = "color,translation,cutout") -> None:
        super().__init__()
        self.names = parse_policy(policy)
        self.policy = ",".join(self.names)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.names:
            return x
        return diff_augment(x, self.policy)
