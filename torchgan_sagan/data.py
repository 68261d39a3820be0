"""Datasets for training: a folder of images (CelebA and the like) and real images that
ship inside Python packages, so that training works with no download.

Every dataset yields ``(image, label)`` pairs with images in [-1, 1], the form
torchgan's ``Trainer`` takes from a ``DataLoader``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "find_images",
    "folder_transform",
    "embedded_faces",
    "embedded_digits",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
CELEBA_FOLDER = "img_align_celeba"


def find_images(root: str | os.PathLike) -> List[Path]:
    """Image files for a CelebA-style ``root``, sorted.

    ``root`` may be CelebA's ``img_align_celeba`` folder (a flat folder of JPEGs), its
    parent (the folder that holds ``img_align_celeba``), or any tree of images such as
    torchvision's ImageFolder layout (one subfolder per class). Raises
    ``FileNotFoundError`` if ``root`` is missing and ``ValueError`` if it holds no images.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"data root {str(root)!r} is a file; give the folder that holds the images")
    if (root / CELEBA_FOLDER).is_dir():
        root = root / CELEBA_FOLDER
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {str(root)!r} or its subfolders"
        )
    return files


def folder_transform(image_size: int, *, crop: Optional[int] = 160, channels: int = 3) -> Callable:
    """The CelebA transform of torchgan's SAGAN tutorial: center crop, resize, [-1, 1].

    ``crop=None`` (or 0) skips the crop; ``channels`` is 1 (grayscale) or 3 (RGB).
    """
    from torchvision import transforms

    steps = [transforms.Grayscale(1)] if channels == 1 else []
    if crop:
        steps.append(transforms.CenterCrop(crop))
    steps += [
        transforms.Resize((image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * channels, [0.5] * channels),
    ]
    return transforms.Compose(steps)


class ImageFiles(Dataset):
    """Images read from files, for unconditional training (every label is 0).

    Files that cannot be opened are dropped when the dataset is built and counted in
    ``skipped``. A file whose image data turns out to be corrupt when it is decoded is
    replaced by the next readable file, with a warning naming it.

    Args:
        files: image paths, e.g. from :func:`find_images`.
        transform: maps a PIL image to a tensor (see :func:`folder_transform`).
        check: open every file's header up front to drop unreadable ones.
    """

    def __init__(self, files: Sequence[Path], transform: Callable, *, check: bool = True) -> None:
        from PIL import Image

        self.transform = transform
        self.skipped: List[Path] = []
        kept = []
        for path in files:
            if check:
                try:
                    with Image.open(path) as im:
                        im.size  # noqa: B018 (reads the header)
                except (OSError, ValueError):
                    self.skipped.append(Path(path))
                    continue
            kept.append(Path(path))
        if not kept:
            raise ValueError(
                f"none of the {len(files)} image files could be read "
                f"(first: {str(files[0])!r})" if files else "no image files given"
            )
        self.files = kept

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as im:
            return self.transform(im.convert("RGB"))

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            try:
                return self._load(i), 0
            except (OSError, ValueError) as err:
                warnings.warn(f"skipping corrupt image {str(self.files[i])!r}: {err}")
        raise ValueError("no image in the dataset could be decoded")


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
