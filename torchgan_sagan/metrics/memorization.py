"""Is the generator drawing new images, copying training ones, or collapsing?

For every sample, the nearest training image in pixel space (Euclidean distance at
the generator's resolution and channels), set against the same distance between
each training image and its nearest other training image. A generator that copies
puts samples much closer to the training set than training images are to each
other; one that generates new images does not.

Closeness to the training set alone cannot tell copying from collapse: a generator
that draws one average face is close, pixel by pixel, to many training images. So the
report also measures how far the samples are from *each other* (each sample's
nearest other sample, against each training image's nearest other training image, on
equal numbers of both): collapsed samples are much closer to each other than
training images are, copies are not.

Everything is computed on the samples' device; the training images are moved there.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from .sampling import chunks

__all__ = ["match_training_images", "nearest_training_images", "memorization_report", "verdict",
           "COLLAPSE_BELOW", "COPIES_BELOW"]

#: ``spread_ratio`` below this: the samples have collapsed.
COLLAPSE_BELOW = 0.5
#: ``median_ratio`` below this (and no collapse): the samples are copies.
COPIES_BELOW = 0.5


def match_training_images(training: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``training`` images resized and converted (gray <-> RGB) to the shape of the
    images in ``like`` (B, C, H, W), and moved to their device: training batches may
    live on the GPU (:class:`~torchgan_sagan.data.DeviceBatches`) while samples come
    back to the CPU (:func:`~torchgan_sagan.metrics.sampling.generate`)."""
    training = training.to(like.device)
    if training.shape[-2:] != like.shape[-2:]:
        training = F.interpolate(training.float(), size=like.shape[-2:], mode="bilinear", antialias=True,
                                 align_corners=False)
    if training.size(1) != like.size(1):
        training = training.mean(1, keepdim=True) if like.size(1) == 1 else training.expand(-1, like.size(1), -1, -1)
    return training.float()


@torch.no_grad()
def nearest_training_images(samples: torch.Tensor, training: torch.Tensor, *, exclude_self: bool = False):
    """``(distances, indices)``: for each sample (B, C, H, W), the pixel-space distance to
    its nearest training image and that image's index. ``exclude_self``: the samples are
    the training images themselves, and each one's own match is skipped."""
    flat_train = training.flatten(1).float()
    distances, indices, start = [], [], 0
    for batch in chunks(samples.flatten(1).float(), 256):
        d = torch.cdist(batch, flat_train)  # (b, N)
        if exclude_self:
            rows = torch.arange(len(batch))
            d[rows, start + rows] = float("inf")
        best = d.min(dim=1)
        distances.append(best.values)
        indices.append(best.indices)
        start += len(batch)
    return torch.cat(distances), torch.cat(indices)


def _quantiles(x: torch.Tensor) -> Dict[str, float]:
    q = torch.quantile(x.double(), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    return {"p05": float(q[0]), "median": float(q[1]), "p95": float(q[2])}


def _median_nearest_other(images: torch.Tensor) -> float:
    distances, _ = nearest_training_images(images, images, exclude_self=True)
    return float(distances.double().median())


def memorization_report(samples: torch.Tensor, training: torch.Tensor) -> Dict:
    """Nearest-training-image distances of ``samples`` against the training images'
    distances to each other, and the samples' distances to each other, on the samples'
    device (``training`` may be on another one).

    Returns the quantiles of the first two (``sample_to_train``, ``train_to_train``),
    their median ratio ``median_ratio`` (about 1 or more: new images; well below 1:
    copies, unless collapsed), ``near_copies``, the share of samples closer to a
    training image than 95% of training images are to their nearest neighbour, and
    ``spread_ratio``: the median distance from a sample to its nearest other sample
    over the same for training images, on the first ``min(len(samples),
    len(training))`` of each (about 1: as varied as the training set; well below 1:
    collapsed). ``verdict`` says which (:func:`verdict`); ``indices`` gives each
    sample's nearest training image.
    """
    if len(samples) < 2 or len(training) < 2:
        raise ValueError(f"the memorization check needs at least 2 samples and 2 training images, got "
                         f"{len(samples)} and {len(training)}")
    training = match_training_images(training, samples)
    sample_d, indices = nearest_training_images(samples, training)
    train_d, _ = nearest_training_images(training, training, exclude_self=True)
    threshold = float(torch.quantile(train_d.double(), 0.05))
    sample_q, train_q = _quantiles(sample_d), _quantiles(train_d)
    n = min(len(samples), len(training))  # equal counts: nearest neighbours are closer among more points
    report = {
        "sample_to_train": sample_q,
        "train_to_train": train_q,
        "median_ratio": sample_q["median"] / max(train_q["median"], 1e-12),
        "near_copies": float((sample_d < threshold).double().mean()),
        "spread_ratio": _median_nearest_other(samples[:n]) / max(_median_nearest_other(training[:n]), 1e-12),
        "indices": indices.tolist(),
    }
    report["verdict"] = verdict(report)
    return report


def verdict(report: Dict) -> str:
    """One line on a :func:`memorization_report`: collapse (checked first: collapsed
    samples are also close to the training set), copies, or new images; none when most
    training images repeat (their distances to each other are then 0)."""
    spread, ratio = report["spread_ratio"], report["median_ratio"]
    if report["train_to_train"]["median"] == 0:
        return ("no verdict: half or more of the training images have an exact copy among them, so the distances "
                "have no scale; look at the picture")
    if spread < COLLAPSE_BELOW:
        return (f"the samples have collapsed: they are much closer to each other than training images are "
                f"(spread ratio {spread:.2f}), not copies")
    if ratio < COPIES_BELOW:
        return f"the samples look like copies of training images (ratio {ratio:.2f})"
    return f"new images: as far from the training set (ratio {ratio:.2f}) and from each other " \
           f"(spread ratio {spread:.2f}) as training images are from each other"
