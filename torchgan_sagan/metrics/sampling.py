"""Drawing images from a trained generator: seeded noise (with the truncation trick
when asked), spherical interpolations, and generation in batches in eval mode."""

from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn as nn

__all__ = ["chunks", "sample_labels", "generate", "GeneratedBatches", "noise", "slerp", "interpolation_noise"]


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


class GeneratedBatches:
    """The images :func:`generate` returns, one CPU batch at a time, so that a caller
    that keeps only features holds one batch of images, not all of them (50,000 RGB
    images of 128x128 are 9.8 GB in float32). ``len()`` is the number of batches; each
    iteration draws the same images, and leaves its first ``keep`` in :attr:`kept`.
    Other arguments as :func:`generate`'s."""

    def __init__(self, generator: nn.Module, num_samples: Optional[int] = None, *, seed: int = 0,
                 batch_size: int = 500, device: Optional[torch.device] = None, z: Optional[torch.Tensor] = None,
                 labels: Optional[torch.Tensor] = None, truncation: Optional[float] = None, keep: int = 0):
        if z is None:
            if num_samples is None:
                raise ValueError("generate needs num_samples or the noise z")
            z = noise(num_samples, generator.encoding_dims, seed=seed, truncation=truncation)
        self.generator, self.z, self.batch_size = generator, z, batch_size
        self.device = device or next(generator.parameters()).device
        self.labels = sample_labels(generator, len(z)) if labels is None else labels
        self.keep, self.kept = keep, None

    def __len__(self) -> int:
        return -(-len(self.z) // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.z)

    def __iter__(self) -> Iterator[torch.Tensor]:
        label_batches = chunks(self.labels, self.batch_size) if self.labels is not None else [None] * len(self)
        was_training = self.generator.training
        self.generator.eval()
        kept = torch.empty(0)
        try:
            for b, y in zip(chunks(self.z, self.batch_size), label_batches):
                with torch.no_grad():
                    args = (b.to(self.device),) if y is None else (b.to(self.device), y.to(self.device))
                    images = self.generator(*args).cpu()
                if len(kept) < self.keep:
                    kept = torch.cat([kept, images[: self.keep - len(kept)]])
                    self.kept = kept
                yield images
        finally:
            self.generator.train(was_training)


def generate(generator: nn.Module, num_samples: Optional[int] = None, *, seed: int = 0, batch_size: int = 500,
             device: Optional[torch.device] = None, z: Optional[torch.Tensor] = None,
             labels: Optional[torch.Tensor] = None, truncation: Optional[float] = None,
             progress: bool = False) -> torch.Tensor:
    """Images from ``generator`` in eval mode (a generator with a weight average runs
    the average), on the CPU, without autograd graphs, ``batch_size`` at a time.

    The noise is ``z``, or ``num_samples`` seeded draws (:func:`noise`, with
    ``truncation`` if given). A conditional generator is asked for ``labels``, by
    default the classes of :func:`sample_labels`. ``progress`` shows a bar.
    :class:`GeneratedBatches` gives the same images a batch at a time.
    """
    batches = GeneratedBatches(generator, num_samples, seed=seed, batch_size=batch_size, device=device, z=z,
                               labels=labels, truncation=truncation)
    if progress:
        from tqdm import tqdm

        return torch.cat(list(tqdm(batches, desc="generating", unit="batch", dynamic_ncols=True)))
    return torch.cat(list(batches))


def noise(num_samples: int, encoding_dims: int, *, seed: int = 0, truncation: Optional[float] = None
          ) -> torch.Tensor:
    """Seeded standard normal noise (num_samples, encoding_dims), on the CPU.

    ``truncation`` (> 0): the truncation trick (Brock et al. 2019, BigGAN): every entry
    whose magnitude exceeds it is drawn again until none does, trading variety for
    typical, cleaner samples.
    """
    if truncation is not None and not truncation > 0:
        raise ValueError(f"truncation must be a positive number (e.g. 0.5 to 2), got {truncation!r}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, encoding_dims, generator=gen)
    if truncation is not None:
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=gen)
            outside = z.abs() > truncation
    return z


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``a`` to ``b`` (both (D,)) at the fractions ``t``
    (T,): (T, D). Gaussian noise lives near a sphere; a straight line between two
    points would pass through its unlikely interior."""
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    t = t[:, None]
    if omega.abs() < 1e-6:  # (nearly) parallel: the straight line is the arc
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolation_noise(encoding_dims: int, rows: int, steps: int, *, seed: int = 0,
                        truncation: Optional[float] = None) -> torch.Tensor:
    """Noise for ``rows`` spherical interpolations of ``steps`` points each, between
    seeded end points: (rows * steps, encoding_dims), row by row."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    ends = noise(2 * rows, encoding_dims, seed=seed, truncation=truncation)
    t = torch.linspace(0, 1, steps)
    return torch.cat([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
