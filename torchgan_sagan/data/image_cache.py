"""A folder of images decoded once: a uint8 array N x C x H x W on disk.

Decoding, cropping and resizing every JPEG with PIL in every epoch caps training at a
few thousand images per second. :func:`build_image_cache` does that work once, in
parallel and with a progress bar, and writes the result as a ``.npy`` file that is read
back with memory mapping (no copy, no decoding), with the images' class labels when
given. The file's name is a hash of what its contents depend on: each file's path, size
and modification time, the image size, the crop, the channels and the labels: a changed
folder or option builds a new cache, a stale one is never served. Files that cannot be
decoded are skipped and named, as :class:`~torchgan_sagan.data.folders.ImageFiles` does.

The cache does not depend on where the folder lives (paths count relative to it), so a
dataset staged to a job's scratch disk with its file times reuses it. Builds of one
cache are serialized by a lock (:mod:`torchgan_sagan.locks`): a job array's tasks wait
for the first, then read its cache; a build killed half-way leaves a partial file that
the next build removes. ``python -m torchgan_sagan.data.image_cache --list`` shows the
caches, ``--prune`` removes those unused for 30 days (``--older-than DAYS``).

The pixels are those of :func:`~torchgan_sagan.data.folders.folder_resize` (the PIL
steps of ``folder_transform``): ``image.float() / 255`` then ``(x - 0.5) / 0.5`` gives
``folder_transform``'s tensor to the last bit (``device_batches`` does that on the device).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..checks import check_image_size
from ..files import atomic_write, default_cache_dir, replace_durably
from ..locks import acquire_lock, read_lock
from .decoding import decode_all

__all__ = ["ImageCache", "build_image_cache", "cache_key", "list_caches", "prune_caches", "CACHE_VERSION"]

#: Bump when the decoding changes, so that caches of the old decoding are not used.
#: 2: images as a person sees them (EXIF rotation, 16-bit scaled, transparency on white).
CACHE_VERSION = 2
#: The suffix of a cache's labels (``images-KEY.labels.npy``), when it has them.
_LABELS = ".labels.npy"


@dataclass
class ImageCache:
    """The decoded images (``images``: a memory-mapped uint8 array N x C x H x W,
    copy-on-write: writes stay in memory and never reach the file), the files that
    could not be decoded, where the array lives, and whether this call built it
    (``built``) and in how many seconds."""

    images: np.ndarray
    path: Path
    skipped: List[Path] = field(default_factory=list)
    built: bool = False
    seconds: float = 0.0
    #: Why each skipped file was skipped (``str(path)`` -> reason).
    reasons: Dict[str, str] = field(default_factory=dict)
    #: Each kept image's class index (int64, N), when the cache was built with labels.
    labels: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.images)


def _root(files: Sequence[str]) -> str:
    """The folder that holds all of ``files``."""
    common = os.path.commonpath([os.path.abspath(f) for f in files])
    return common if len(files) > 1 or not os.path.isfile(common) else os.path.dirname(common)


def cache_key(files: Sequence[Path], image_size: int, crop: Optional[int], channels: int, *,
              root: Optional[str] = None, labels: Optional[Sequence[int]] = None) -> str:
    """A hash of what the cached pixels depend on: every file's path relative to the
    folder that holds them all, its size and modification time, the options, and
    :data:`CACHE_VERSION`. Where the folder lives does not count: a dataset copied to
    a job's scratch disk with its times (``cp -p``, ``rsync -a``) uses the same cache.
    ``root``: that folder, where the caller has it already; ``labels``: the files' classes,
    which count too."""
    files = [os.fspath(f) for f in files]
    root = _root(files) if root is None else root
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, crop or 0, channels]).encode())
    if labels is not None:
        digest.update(b"labels" + np.asarray(labels, dtype=np.int64).tobytes())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(os.path.abspath(path), root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()[:24]


def _key_of(name: str) -> Optional[str]:
    """The key in a cache file's name (``images-KEY.npy``, ``.tmp-[PID-]images-KEY.npy``)."""
    stem = name.split("images-", 1)[1] if "images-" in name else ""
    key = stem.split(".", 1)[0]
    return key or None


def _cache_folder(cache_dir: Optional[os.PathLike]) -> Path:
    """``cache_dir``, or the package's cache folder for images."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "images"


def _lock_path(folder: Path, key: str) -> Path:
    return folder / f"images-{key}.lock"


def _being_built(folder: Path, name: str) -> bool:
    """Whether a live build holds the cache of the file ``name`` (a cache or a partial one)."""
    key = _key_of(name)
    holder = read_lock(_lock_path(folder, key)) if key else None
    return bool(holder and holder["alive"])


def build_image_cache(files: Sequence[os.PathLike], image_size: int, *, crop: Optional[int] = 160,
                      channels: int = 3, cache_dir: Optional[os.PathLike] = None, workers: Optional[int] = None,
                      progress: bool = True, labels: Optional[Sequence[int]] = None) -> ImageCache:
    """The cache of ``files`` at ``image_size`` (center ``crop`` first; ``None`` or 0:
    none) in ``channels`` (1 or 3): read if it exists, else built with ``workers``
    processes (default: the CPUs) and written atomically to ``cache_dir`` (default:
    ``$TORCHGAN_SAGAN_CACHE`` or ``~/.cache/torchgan_sagan``). ``labels``: each file's
    class index, stored with the images (``ImageCache.labels``: those of the kept ones)."""
    check_image_size("image_size", image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("no image files given")
    if labels is not None and len(labels) != len(files):
        raise ValueError(f"{len(labels)} labels for {len(files)} files: give one label per file")
    start = time.perf_counter()
    folder = _cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    root = _root(files)
    key = cache_key(files, image_size, crop, channels, root=root, labels=labels)
    path = folder / f"images-{key}.npy"
    found = _read(path, start)
    if found is not None:
        return found
    prune_caches(folder, older_than_days=float("inf"))  # only the partial files of killed builds, often GBs
    # One build of a key at a time (a job array's tasks start together): the others
    # wait for it, then read what it built.
    with acquire_lock(_lock_path(folder, key), what=f"the image cache {path.name}", wait=True,
                      say=lambda line: print(line, file=sys.stderr)):
        found = _read(path, start)
        if found is not None:
            return found
        return _build(files, root, path, image_size, crop, channels, workers, progress, start, labels)


def _read(path: Path, start: float) -> Optional[ImageCache]:
    """The cache at ``path`` if it is complete (its list of skipped files is written
    first, the array last), its use recorded in that list's modification time (what
    :func:`prune_caches` goes by); else ``None``."""
    skipped_path = path.with_suffix(".skipped.json")
    if not (path.is_file() and skipped_path.is_file()):
        return None
    images = np.load(path, mmap_mode="c")
    entries = [(e, "") if isinstance(e, str) else tuple(e) for e in json.loads(skipped_path.read_text())]
    try:
        os.utime(skipped_path)
    except OSError:
        pass
    labels = np.load(path.with_suffix(_LABELS)) if path.with_suffix(_LABELS).is_file() else None
    return ImageCache(images, path, [Path(p) for p, _ in entries], False, time.perf_counter() - start, dict(entries),
                      labels)


def _build(files: List[str], root: str, path: Path, image_size: int, crop, channels: int, workers: Optional[int],
           progress: bool, start: float, labels: Optional[Sequence[int]] = None) -> ImageCache:
    folder, skipped_path = path.parent, path.with_suffix(".skipped.json")
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    # Decoded straight into a memory-mapped file beside the cache (not into memory:
    # CelebA at 128x128 is 10 GB), renamed into place once complete.
    partial = folder / f".tmp-{path.stem}.npy"
    pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                       shape=(len(files), channels, image_size, image_size))
    try:
        kept, skipped, reasons, kept_labels = 0, [], {}, []
        for i, image in enumerate(decode_all(files, image_size, crop or None, channels, workers, progress)):
            name = files[i]
            if isinstance(image, str):
                skipped.append(Path(name))
                reasons[name] = image
                continue
            pixels[kept], kept = image, kept + 1
            kept_labels += [] if labels is None else [int(labels[i])]
        kept_labels = None if labels is None else np.asarray(kept_labels, np.int64)
        if not kept:
            raise ValueError(f"none of the {len(files)} image files could be read (first: {files[0]!r}: "
                             f"{reasons[files[0]]})")
        # Notes and the list of skipped files first: the array is what marks the cache complete.
        notes = {"root": root, "files": len(files), "images": kept, "image_size": image_size, "crop": crop,
                 "channels": channels, "version": CACHE_VERSION}
        atomic_write(path.with_suffix(".about.json"), lambda f: f.write(json.dumps(notes).encode()))
        atomic_write(skipped_path, lambda f: f.write(json.dumps([[str(p), reasons[str(p)]] for p in skipped]).encode()))
        if kept_labels is not None:
            atomic_write(path.with_suffix(_LABELS), lambda f: np.save(f, kept_labels, allow_pickle=False))
        if kept == len(files):
            pixels.flush()
            del pixels
            replace_durably(partial, path)
        else:
            atomic_write(path, lambda f: np.save(f, pixels[:kept], allow_pickle=False))
    finally:
        if partial.exists():
            os.remove(partial)
    return ImageCache(np.load(path, mmap_mode="c"), path, skipped, True, time.perf_counter() - start, reasons,
                      kept_labels)


def list_caches(cache_dir: Optional[os.PathLike] = None) -> List[dict]:
    """The caches in ``cache_dir`` (default: the package's), newest used first: file,
    size in bytes, shape, days since last used, the folder they were built from, whether
    a build holds them now; and partial files left by killed builds."""
    folder = _cache_folder(cache_dir)
    found = []
    for path in sorted(p for p in folder.glob("images-*.npy") if not p.name.endswith(_LABELS)):
        notes_path, skipped_path = path.with_suffix(".about.json"), path.with_suffix(".skipped.json")
        try:
            notes = json.loads(notes_path.read_text()) if notes_path.is_file() else {}
            shape = tuple(np.load(path, mmap_mode="r").shape)
        except (OSError, ValueError):
            notes, shape = {}, None
        used = (skipped_path if skipped_path.is_file() else path).stat().st_mtime
        found.append({"path": path, "bytes": path.stat().st_size, "shape": shape, "root": notes.get("root"),
                      "days_unused": (time.time() - used) / 86400, "in_use": _being_built(folder, path.name)})
    for partial in sorted(folder.glob(".tmp-*.npy")):
        found.append({"path": partial, "bytes": partial.stat().st_size, "shape": None, "root": None,
                      "days_unused": (time.time() - partial.stat().st_mtime) / 86400,
                      "in_use": _being_built(folder, partial.name), "partial": True})
    return sorted(found, key=lambda c: c["days_unused"])


def prune_caches(cache_dir: Optional[os.PathLike] = None, *, older_than_days: float = 30.0) -> List[Path]:
    """Remove the caches of ``cache_dir`` unused for ``older_than_days`` (0: all), and the
    partial files of killed builds; never one a build holds. Returns what was removed."""
    removed = []
    for cache in list_caches(cache_dir):
        if cache["in_use"] or (not cache.get("partial") and cache["days_unused"] < older_than_days):
            continue
        path = cache["path"]
        for part in (path, path.with_suffix(".skipped.json"), path.with_suffix(".about.json"), path.with_suffix(_LABELS)):
            try:
                part.unlink()
                removed.append(part)
            except FileNotFoundError:
                pass
    return removed


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m torchgan_sagan.data.image_cache",
                                description="List or remove the image caches that examples/celeba.py builds.")
    p.add_argument("--cache-dir", type=Path, help="where the caches are (default: $TORCHGAN_SAGAN_CACHE or "
                   "~/.cache/torchgan_sagan, under images/)")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="each cache: size, images, last use, source folder")
    action.add_argument("--prune", action="store_true", help="remove caches unused for --older-than days, and "
                        "the partial files of killed builds")
    p.add_argument("--older-than", type=float, default=30.0, metavar="DAYS", help="with --prune (0: every cache)")
    args = p.parse_args(argv)
    folder = _cache_folder(args.cache_dir)
    if args.list:
        caches = list_caches(folder)
        for c in caches:
            what = "partial file of a build" + (" (running)" if c["in_use"] else " (killed)") if c.get("partial") \
                else f"{c['shape'][0]} images {'x'.join(map(str, c['shape'][1:]))}" if c["shape"] else "unreadable"
            print(f"{c['path'].name}  {c['bytes'] / 2**20:9.1f} MiB  {what}, used {c['days_unused']:.1f} days ago"
                  + (f", from {c['root']}" if c["root"] else "") + (", being built" if c["in_use"] else ""))
        print(f"{len(caches)} file(s), {sum(c['bytes'] for c in caches) / 2**30:.2f} GiB in {folder}")
    else:
        removed = [p for p in prune_caches(folder, older_than_days=args.older_than) if p.suffix == ".npy"]
        print(f"Removed {len(removed)} cache(s) from {folder}" + "".join(f"\n  {p.name}" for p in removed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
