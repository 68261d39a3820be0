"""Drawing images from a trained generator: seeded, in batches, in eval mode."""

from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn as nn

__all__ = ["chunks", "sample_labels", "generate"]


def chunks(x: torch.Tensor, size: int = 500) -> Iterator[torch.Tensor]:
    """``x`` in consecutive slices of ``size`` along the first dimension."""
    for start in range(0, len(x), size):
        yield x[start : start + size]


@torch.no_grad()
def sample_labels(generator: nn.Module, num_samples: int) -> Optional[torch.Tensor]:
    """The classes :func:`generate` asks a conditional generator for: 0, 1, ...,
    num_classes - 1, 0, 1, ... (equal shares); ``None`` for an unconditional one."""
    num_classes = getattr(generator, "num_classes", 0)
    return torch.arange(num_samples) % num_classes if num_classes else None


def generate(generator: nn.Module, num_samples: int, *, seed: int = 0, batch_size: int = 500,
             device: Optional[torch.device] = None) -> torch.Tensor:
    """``num_samples`` images from ``generator`` in eval mode, on the CPU, from seeded noise
    (a generator with a weight average runs the average in eval mode). A conditional
    generator is asked for the classes of :func:`sample_labels`."""
    device = device or next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        z = torch.randn(num_samples, generator.encoding_dims, generator=torch.Generator().manual_seed(seed))
        labels = sample_labels(generator, num_samples)
        if labels is None:
            return torch.cat([generator(b.to(device)).cpu() for b in chunks(z, batch_size)])
        return torch.cat([generator(b.to(device), y.to(device)).cpu()
                          for b, y in zip(chunks(z, batch_size), chunks(labels, batch_size))])
    finally:
        generator.train(was_training)
