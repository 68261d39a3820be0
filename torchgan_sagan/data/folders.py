"""A folder of images (CelebA and the like) as a training dataset.

It yields ``(image, label)`` pairs with images in [-1, 1], the form torchgan's
``Trainer`` takes from a ``DataLoader``.

Images come from the wild: :func:`open_image` shows each one as a person would see it
(EXIF rotation applied, 16-bit scaled to 8, palette and transparency over white, CMYK
as RGB), and any file Pillow cannot decode (a truncated file raises ``OSError``, some
PNGs cut at a chunk boundary ``SyntaxError``, an image of more than twice
``Image.MAX_IMAGE_PIXELS`` ``DecompressionBombError``) is skipped and named, never the
end of a run. A center
crop larger than an image is not padded with black: :class:`TooSmallForCrop` says so,
and the image is skipped and named likewise.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "find_images", "folder_resize", "folder_transform", "open_image",
           "default_crop", "resolve_crop", "TooSmallForCrop", "CELEBA_CROP", "SQUARE",
           "image_root", "evenly_spaced"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
CELEBA_FOLDER = "img_align_celeba"


def find_images(root: str | os.PathLike) -> List[Path]:
    """Image files for a CelebA-style ``root``, sorted.

    ``root`` may be CelebA's ``img_align_celeba`` folder (a flat folder of JPEGs), its
    parent (the folder that holds ``img_align_celeba``), or any tree of images such as
    torchvision's ImageFolder layout (one subfolder per class). Raises
    ``FileNotFoundError`` if ``root`` is missing and ``ValueError`` if it holds no images.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"data root {str(root)!r} is a file; give the folder that holds the images")
    root = image_root(root)
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {str(root)!r} or its subfolders"
        )
    return files


def evenly_spaced(items: Sequence, n: Optional[int]) -> list:
    """``n`` of ``items`` spread evenly over them, in their order (all when ``n`` is
    ``None`` or not less): in a sorted class-subfolder layout every class gets its share,
    where the first ``n`` would be the first classes only."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def image_root(root: str | os.PathLike) -> Path:
    """The folder whose images :func:`find_images` lists: ``root``, or CelebA's
    ``img_align_celeba`` inside it."""
    root = Path(root).expanduser()
    return root / CELEBA_FOLDER if (root / CELEBA_FOLDER).is_dir() else root


#: CelebA's crop of its 178x218 aligned faces (torchgan's SAGAN tutorial, and most ports).
CELEBA_CROP = 160
#: ``crop`` for a center square as large as each image allows.
SQUARE = "square"


class TooSmallForCrop(ValueError):
    """An image smaller than the center crop asked for (it would be padded with black)."""


def default_crop(root: str | os.PathLike) -> Union[int, str]:
    """CelebA's 160 for CelebA's folder (``img_align_celeba``, or the folder that holds
    it), the largest center square (:data:`SQUARE`) for any other folder."""
    root = Path(root)
    return CELEBA_CROP if root.name == CELEBA_FOLDER or (root / CELEBA_FOLDER).is_dir() else SQUARE


def resolve_crop(root: str | os.PathLike, crop: Optional[Union[int, str]]) -> Optional[Union[int, str]]:
    """The crop to use for ``root``'s images given ``--crop``'s value: ``None`` (not
    given) is the folder's :func:`default_crop`, 0 is none (``None``)."""
    return default_crop(root) if crop is None else (crop or None)


def open_image(path: str | os.PathLike):
    """The image at ``path`` as an RGB PIL image, as a person would see it: EXIF
    orientation applied, 16- and 32-bit pixels scaled to 8 bits, palette and
    transparent images over white, CMYK and others converted. Raises whatever Pillow
    raises for a file it cannot decode (``OSError``, ``SyntaxError``,
    ``DecompressionBombError``, ...)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)  # a copy, so it outlives the file
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            import numpy as np

            pixels = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") or pixels.max() > 255 else 255.0
            im = Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("RGBA", "LA", "PA"):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        return im.convert("RGB")


def folder_resize(image_size: int, *, crop: Optional[Union[int, str]] = CELEBA_CROP, channels: int = 3) -> Callable:
    """The PIL steps of :func:`folder_transform`: grayscale (``channels=1``), center
    crop (``crop``: a size in pixels, :data:`SQUARE` for the largest square, ``None``
    or 0 for none), resize; a PIL image in, a PIL image out. An image smaller than an
    integer ``crop`` raises :class:`TooSmallForCrop`."""
    from torchvision import transforms

    gray = transforms.Grayscale(1) if channels == 1 else None
    resize = transforms.Resize((image_size, image_size))

    def steps(im):
        if gray is not None:
            im = gray(im)
        if crop == SQUARE:
            im = transforms.functional.center_crop(im, min(im.size))
        elif crop:
            if min(im.size) < crop:
                raise TooSmallForCrop(f"{im.size[0]}x{im.size[1]} is smaller than the center crop {crop}")
            im = transforms.functional.center_crop(im, crop)
        return resize(im)

    return steps


def folder_transform(image_size: int, *, crop: Optional[Union[int, str]] = CELEBA_CROP, channels: int = 3) -> Callable:
    """The CelebA transform of torchgan's SAGAN tutorial: center crop, resize, [-1, 1].

    ``crop``: as :func:`folder_resize` takes it; ``channels`` is 1 (grayscale) or 3 (RGB).
    """
    from torchvision import transforms

    return transforms.Compose([
        folder_resize(image_size, crop=crop, channels=channels),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * channels, [0.5] * channels),
    ])


class ImageFiles(Dataset):
    """Images read from files, with their class labels (``labels``; without them every
    label is 0, for unconditional training).

    Files that cannot be opened are dropped when the dataset is built and counted in
    ``skipped``. A file whose image data turns out to be corrupt when it is decoded is
    replaced by the next readable file, with a warning naming it.

    Args:
        files: image paths, e.g. from :func:`find_images`.
        transform: maps a PIL image to a tensor (see :func:`folder_transform`).
        check: open every file's header up front to drop unreadable ones.
        labels: each file's class index (see :mod:`torchgan_sagan.data.labels`).
    """

    def __init__(self, files: Sequence[Path], transform: Callable, *, check: bool = True,
                 labels: Optional[Sequence[int]] = None) -> None:
        from PIL import Image

        if labels is not None and len(labels) != len(files):
            raise ValueError(f"{len(labels)} labels for {len(files)} files: give one label per file")
        self.transform = transform
        self.skipped: List[Path] = []
        kept, kept_labels = [], []
        for i, path in enumerate(files):
            if check:
                try:
                    with Image.open(path) as im:
                        im.size  # noqa: B018 (reads the header)
                except Exception:  # noqa: BLE001 (Pillow's errors for undecodable files are of many kinds)
                    self.skipped.append(Path(path))
                    continue
            kept.append(Path(path))
            kept_labels.append(0 if labels is None else int(labels[i]))
        if not kept:
            raise ValueError(
                f"none of the {len(files)} image files could be read "
                f"(first: {str(files[0])!r})" if files else "no image files given"
            )
        self.files = kept
        self.labels = kept_labels

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> torch.Tensor:
        return self.transform(open_image(self.files[index]))

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            try:
                return self._load(i), self.labels[i]
            except Exception as err:  # noqa: BLE001 (any file Pillow cannot decode, or too small to crop)
                warnings.warn(f"skipping image {str(self.files[i])!r}: {err}")
        raise ValueError("no image in the dataset could be decoded")
