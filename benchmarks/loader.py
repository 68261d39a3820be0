"""Images per second delivered to a training loop: the image cache against PIL.

Both paths serve the same folder at the same size (center crop 160, resized to
``--image-size``, RGB, as ``examples/celeba.py`` on CelebA):

- PIL: ``DataLoader(ImageFiles(...), num_workers=W, shuffle=True)``, decoding every
  JPEG in every epoch (what ``examples/celeba.py --no-image-cache`` does);
- cached: the images decoded once by ``W`` processes into a uint8 array
  (``torchgan_sagan.data.build_image_cache``), then ``DeviceBatches`` over it.

Each path is timed over ``--batches`` batches of ``--batch`` images after one warm-up
batch, each batch handed to a loop that only takes it (no training), on the CPU. The
cache is built once (its time is the build's) and opened again (the reuse's time,
with nothing decoded). ``--make N`` first fills an empty ``--data-root`` with N JPEGs
of CelebA's size (178x218, smooth random colours).

    python benchmarks/loader.py --data-root /tmp/jpegs --make 5000
    python benchmarks/loader.py --data-root ~/data/celeba --workers 4

The last line reads ``loader: cached N img/s, PIL M img/s (R x), cache build B s, reuse U s``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from torchgan_sagan.data import DeviceBatches, ImageFiles, build_image_cache, find_images, folder_transform


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs of 178x218 (CelebA's size): random colours blurred into blobs."""
    from PIL import Image, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, size=(14, 11, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((178, 218), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        image.save(folder / f"{i:06d}.jpg", quality=90)


def images_per_second(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # warm-up: workers started, first pages read
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(it)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True, help="a folder of images")
    p.add_argument("--make", type=int, default=0, metavar="N", help="first write N JPEGs into an empty --data-root")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=50, help="batches timed per path")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers, and processes building the cache")
    p.add_argument("--cache-dir", type=Path, help="where the cache goes (default: a temporary folder)")
    args = p.parse_args(argv)

    if args.make:
        if args.data_root.is_dir() and any(args.data_root.iterdir()):
            print(f"error: --make writes into an empty folder; {args.data_root} is not", file=sys.stderr)
            return 2
        print(f"writing {args.make} JPEGs (178x218) to {args.data_root}")
        make_images(args.data_root, args.make)
    try:
        files = find_images(args.data_root)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    needed = (args.batches + 1) * args.batch
    if len(files) < needed:
        print(f"error: {len(files)} images; --batches {args.batches} of --batch {args.batch} need {needed}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{len(files)} images, {args.image_size}x{args.image_size}, batch {args.batch}, {args.workers} worker(s)")

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        cache = build_image_cache(files, args.image_size, crop=160, channels=3, cache_dir=cache_dir,
                                  workers=args.workers)
        build = cache.seconds
        again = build_image_cache(files, args.image_size, crop=160, channels=3, cache_dir=cache_dir,
                                  workers=args.workers, progress=False)
        assert not again.built, "the second start rebuilt the cache"
        reuse = again.seconds
        cached = images_per_second(DeviceBatches(again.images, args.batch, seed=0), args.batches)
        del cache, again

    transform = folder_transform(args.image_size, crop=160, channels=3)
    dataset = ImageFiles(files, transform, check=False)
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
                        generator=torch.Generator().manual_seed(0), persistent_workers=args.workers > 0)
    pil = images_per_second(loader, args.batches)
    print(f"loader: cached {cached:.0f} img/s, PIL {pil:.0f} img/s ({cached / pil:.1f} x), "
          f"cache build {build:.1f} s, reuse {reuse:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
