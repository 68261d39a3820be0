"""Training data: a folder of images (``folders.py``), decoded once into a cache
(``image_cache.py``) and served as batches on the training device
(``device_batches.py``), and the real images that ship with packages
(``embedded.py``)."""

from .device_batches import DeviceBatches, to_unit_range
from .embedded import embedded_digits, embedded_faces
from .folders import SQUARE, IMAGE_EXTENSIONS, ImageFiles, default_crop, find_images, folder_transform, open_image
from .image_cache import ImageCache, build_image_cache

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "find_images", "folder_transform", "open_image", "default_crop", "SQUARE",
           "ImageCache", "build_image_cache", "DeviceBatches", "to_unit_range", "embedded_faces", "embedded_digits"]
