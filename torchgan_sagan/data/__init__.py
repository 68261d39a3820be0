"""Training data: a folder of images (``folders.py``) and its classes (``labels.py``:
class subfolders or a labels file), decoded in parallel (``decoding.py``) once into a
cache (``image_cache.py``) and served as batches with their labels on the training
device (``device_batches.py``), and the real images that ship with packages
(``embedded.py``)."""

from .device_batches import DeviceBatches, to_unit_range
from .embedded import embedded_digits, embedded_faces
from .folders import SQUARE, IMAGE_EXTENSIONS, ImageFiles, default_crop, find_images, folder_transform, open_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "find_images", "folder_transform", "open_image", "default_crop", "SQUARE",
           "ImageCache", "build_image_cache", "DeviceBatches", "to_unit_range", "embedded_faces", "embedded_digits"]


def __getattr__(name: str):
    # The image cache is imported when first asked for: ``python -m
    # torchgan_sagan.data.image_cache`` then runs a module not imported before.
    if name in ("ImageCache", "build_image_cache"):
        from . import image_cache

        return getattr(image_cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
