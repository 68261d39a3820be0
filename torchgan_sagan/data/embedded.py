"""Real images that ship inside Python packages, so that training works with no
download: 100 faces (scikit-image) and 1,797 digits (scikit-learn).

Each is a ``TensorDataset`` of ``(image, label)`` pairs with images in [-1, 1].
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

__all__ = ["embedded_faces", "embedded_digits"]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) in [0, 1] -> (N, C, size, size) in [-1, 1], antialiased."""
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (images.clamp(0, 1) * 2 - 1).contiguous()


def embedded_faces(image_size: int = 32, *, flips: bool = True, max_images: Optional[int] = None) -> TensorDataset:
    """The 100 face crops of Labeled Faces in the Wild that ship with scikit-image.

    ``skimage.data.lfw_subset()`` holds 200 grayscale 25x25 crops, the first 100 of
    them faces. They are resized to ``image_size`` and, with ``flips``, joined by their
    mirror images (200 in all). ``max_images`` keeps the first faces only.
    """
    try:
        from skimage.data import lfw_subset
    except ImportError as err:
        raise ImportError(
            "the embedded faces come with scikit-image: python -m pip install scikit-image "
            "(or install this package with the [examples] extra)"
        ) from err
    faces = torch.from_numpy(lfw_subset()[:100]).float().unsqueeze(1)  # (100, 1, 25, 25)
    if max_images is not None:
        faces = faces[:max_images]
    if flips:
        faces = torch.cat([faces, faces.flip(-1)])
    images = _resize(faces, image_size)
    return TensorDataset(images, torch.zeros(len(images), dtype=torch.long))


def embedded_digits(
    image_size: int = 32, *, classes: Optional[Sequence[int]] = None
) -> TensorDataset:
    """The 1,797 handwritten 8x8 digits that ship with scikit-learn, with their labels.

    Resized to ``image_size`` (grayscale, [-1, 1]); ``classes`` keeps only those digits.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the embedded digits come with scikit-learn: python -m pip install scikit-learn "
            "(or install this package with the [examples] extra)"
        ) from err
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    labels = torch.from_numpy(digits.target).long()
    if classes is not None:
        keep = torch.isin(labels, torch.tensor(list(classes)))
        images, labels = images[keep], labels[keep]
    return TensorDataset(_resize(images, image_size), labels)
