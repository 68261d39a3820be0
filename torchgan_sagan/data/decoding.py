"""Images decoded in parallel: each file opened as a person sees it
(:func:`~torchgan_sagan.data.folders.open_image`), cropped and resized
(:func:`~torchgan_sagan.data.folders.folder_resize`) by worker processes, in order,
under a progress bar. :mod:`torchgan_sagan.data.image_cache` stores what comes out."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, List, Optional, Union

import numpy as np

from .folders import TooSmallForCrop, folder_resize, open_image

__all__ = ["decode_all"]

#: Images each worker decodes per task.
_CHUNK = 64


def _decode(path: str, resize: Callable) -> Union[np.ndarray, str]:
    """One image (:func:`~torchgan_sagan.data.folders.open_image`) after ``resize``
    (:func:`folder_resize`), as C x H x W uint8; or why it cannot be used."""
    try:
        pixels = np.asarray(resize(open_image(path)), dtype=np.uint8)
    except TooSmallForCrop as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 (Pillow's errors for undecodable files are of many kinds)
        return f"cannot be decoded ({type(err).__name__})"
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode_chunk(args) -> List[Union[np.ndarray, str]]:
    paths, image_size, crop, channels = args
    resize = folder_resize(image_size, crop=crop, channels=channels)
    return [_decode(p, resize) for p in paths]


def decode_all(files: List[str], image_size: int, crop: Optional[int], channels: int, workers: int, progress: bool):
    """Each file's pixels (C x H x W uint8) or why it cannot be used (a string), in
    order, decoded by ``workers`` processes under a progress bar (``progress``)."""
    from tqdm import tqdm

    chunks = [(files[i:i + _CHUNK], image_size, crop, channels) for i in range(0, len(files), _CHUNK)]
    # On stdout: a build that ends in an error leaves that error alone on stderr.
    bar = tqdm(total=len(files), desc="decoding images once", unit="img", disable=not progress, file=sys.stdout)
    try:
        if workers <= 1:
            results = map(_decode_chunk, chunks)
            for chunk in results:
                bar.update(len(chunk))
                yield from chunk
        else:
            with ProcessPoolExecutor(workers) as pool:
                for chunk in pool.map(_decode_chunk, chunks):
                    bar.update(len(chunk))
                    yield from chunk
    finally:
        bar.close()
