"""Training data: a folder of images, and the real images that ship with packages."""

from .embedded import embedded_digits, embedded_faces
from .folders import IMAGE_EXTENSIONS, ImageFiles, find_images, folder_transform

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "find_images", "folder_transform", "embedded_faces", "embedded_digits"]
