"""A folder of images (CelebA and the like) as a training dataset.

It yields ``(image, label)`` pairs with images in [-1, 1], the form torchgan's
``Trainer`` takes from a ``DataLoader``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "find_images", "folder_resize", "folder_transform"]

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


def folder_resize(image_size: int, *, crop: Optional[int] = 160, channels: int = 3) -> Callable:
    """The PIL steps of :func:`folder_transform`: grayscale (``channels=1``), center
    crop (``crop=None`` or 0: none), resize; a PIL image in, a PIL image out."""
    from torchvision import transforms

    steps = [transforms.Grayscale(1)] if channels == 1 else []
    if crop:
        steps.append(transforms.CenterCrop(crop))
    steps.append(transforms.Resize((image_size, image_size)))
    return transforms.Compose(steps)


def folder_transform(image_size: int, *, crop: Optional[int] = 160, channels: int = 3) -> Callable:
    """The CelebA transform of torchgan's SAGAN tutorial: center crop, resize, [-1, 1].

    ``crop=None`` (or 0) skips the crop; ``channels`` is 1 (grayscale) or 3 (RGB).
    """
    from torchvision import transforms

    return transforms.Compose([
        folder_resize(image_size, crop=crop, channels=channels),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * channels, [0.5] * channels),
    ])


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
