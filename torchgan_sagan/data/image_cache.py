"""A folder of images decoded once: a uint8 array N x C x H x W on disk.

Decoding, cropping and resizing every JPEG with PIL in every epoch caps training at a
few thousand images per second. :func:`build_image_cache` does that work once, in
parallel and with a progress bar, and writes the result as a ``.npy`` file that is read
back with memory mapping (no copy, no decoding). The file's name is a hash of what its
contents depend on: each file's path, size and modification time, the image size, the
crop and the channels. A changed folder or option therefore builds a new cache, and a
stale one is never served. Files that cannot be decoded are skipped and named, as
:class:`~torchgan_sagan.data.folders.ImageFiles` does.

The pixels are those of :func:`~torchgan_sagan.data.folders.folder_transform` before
its conversion to float (its PIL steps, :func:`~torchgan_sagan.data.folders.folder_resize`): ``image.float() / 255`` then ``(x - 0.5) / 0.5`` gives the
same tensor to the last bit (:mod:`torchgan_sagan.data.device_batches` does that on the
training device).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..checks import check_image_size
from ..files import atomic_write, default_cache_dir, replace_durably
from .folders import TooSmallForCrop, folder_resize, open_image

__all__ = ["ImageCache", "build_image_cache", "cache_key", "CACHE_VERSION"]

#: Bump when the decoding changes, so that caches of the old decoding are not used.
#: 2: images as a person sees them (EXIF rotation, 16-bit scaled, transparency on white).
CACHE_VERSION = 2
#: Images each worker decodes per task.
_CHUNK = 64


@dataclass
class ImageCache:
    """The decoded images (``images``: a memory-mapped uint8 array N x C x H x W,
    copy-on-write: writes stay in memory and never reach the file), the files that could not be decoded, where the array lives, and
    whether this call built it (``built``) and in how many seconds."""

    images: np.ndarray
    path: Path
    skipped: List[Path] = field(default_factory=list)
    built: bool = False
    seconds: float = 0.0
    #: Why each skipped file was skipped (``str(path)`` -> reason).
    reasons: Dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def cache_key(files: Sequence[Path], image_size: int, crop: Optional[int], channels: int) -> str:
    """A hash of what the cached pixels depend on: every file's resolved path, size and
    modification time, the options, and :data:`CACHE_VERSION`."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, crop or 0, channels]).encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


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


def _decoded(files: List[str], image_size: int, crop: Optional[int], channels: int, workers: int, progress: bool):
    """Each file's pixels (or ``None``), in order, decoded by ``workers`` processes."""
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


def build_image_cache(files: Sequence[os.PathLike], image_size: int, *, crop: Optional[int] = 160,
                      channels: int = 3, cache_dir: Optional[os.PathLike] = None, workers: Optional[int] = None,
                      progress: bool = True) -> ImageCache:
    """The cache of ``files`` at ``image_size`` (center ``crop`` first; ``None`` or 0:
    none) in ``channels`` (1 or 3): read if it exists, else built with ``workers``
    processes (default: the CPUs) and written atomically to ``cache_dir`` (default:
    ``$TORCHGAN_SAGAN_CACHE`` or ``~/.cache/torchgan_sagan``)."""
    check_image_size("image_size", image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("no image files given")
    start = time.perf_counter()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"images-{cache_key(files, image_size, crop, channels)}.npy"
    skipped_path = path.with_suffix(".skipped.json")
    if path.is_file() and skipped_path.is_file():
        images = np.load(path, mmap_mode="c")
        entries = [(e, "") if isinstance(e, str) else tuple(e) for e in json.loads(skipped_path.read_text())]
        return ImageCache(images, path, [Path(p) for p, _ in entries], built=False,
                          seconds=time.perf_counter() - start, reasons=dict(entries))

    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    # Decoded straight into a memory-mapped file beside the cache (not into memory:
    # CelebA at 128x128 is 10 GB), renamed into place once complete.
    partial = folder / f".tmp-{os.getpid()}-{path.stem}.npy"
    pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                       shape=(len(files), channels, image_size, image_size))
    try:
        kept, skipped, reasons = 0, [], {}
        for name, image in zip(files, _decoded(files, image_size, crop or None, channels, workers, progress)):
            if isinstance(image, str):
                skipped.append(Path(name))
                reasons[name] = image
                continue
            pixels[kept] = image
            kept += 1
        if not kept:
            raise ValueError(f"none of the {len(files)} image files could be read (first: {files[0]!r}: "
                             f"{reasons[files[0]]})")
        # The list of skipped files first: the array is what marks the cache complete.
        atomic_write(skipped_path, lambda f: f.write(json.dumps([[str(p), reasons[str(p)]] for p in skipped]).encode()))
        if kept == len(files):
            pixels.flush()
            del pixels
            replace_durably(partial, path)
        else:
            atomic_write(path, lambda f: np.save(f, pixels[:kept], allow_pickle=False))
    finally:
        if partial.exists():
            os.remove(partial)
    images = np.load(path, mmap_mode="c")
    return ImageCache(images, path, skipped, built=True, seconds=time.perf_counter() - start, reasons=reasons)
