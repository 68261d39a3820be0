"""Draw images from a trained run: ``python -m torchgan_sagan.generate RUN``.

    python -m torchgan_sagan.generate runs/sagan_faces_32                # 64 images, grid, interpolation, attention
    python -m torchgan_sagan.generate runs/sagan_faces_32 --num 1000 --truncation 1.0 --out new_faces
    python -m torchgan_sagan.generate runs/digits --classes 3 7 --per-class 10   # a conditional run
    python -m torchgan_sagan.generate runs/pets --class cat --num 16             # a class by its name
    python -m torchgan_sagan.generate runs/new --beside runs/old          # two runs, same noise

RUN is a run folder (its newest intact checkpoint) or a checkpoint file; the
generator is rebuilt from the config the run recorded and runs in eval mode (its
moving average, when it has one). Everything is seeded (``--seed``) and goes to
``--out`` (default ``RUN/generated``):

- ``images/000000.png``, ...: ``--num`` images, one file each, and ``grid.png``;
- ``interpolation.png`` and ``interpolation.gif``: spherical interpolations between
  seeded noise vectors (``--interpolate`` steps, ``--rows`` of them; 0: none);
- ``classes.png`` (conditional runs): one row per class of ``--classes`` (default all);
  a class is its index or its name (the run's class subfolder or label, as recorded in
  its config), and ``--num`` images cycle through the classes given;
- ``attention.png``: where four pixels of ``--attention`` samples attend (0: none);
- ``beside.png`` with ``--beside OTHER_RUN ...``: the first 64 images of ``grid.png``
  and, beside them, what each other run's generator makes from the same noise (and
  labels), titled by folder name: a before/after picture of a recipe change.

``--truncation T`` draws every noise entry from the normal distribution truncated to
[-T, T] (the truncation trick: less variety, more typical images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from torchvision.utils import save_image

from .recipe.cli import CommandError, command_parser, parse_device, require_at_least, run_command
from .trainer.run_folder import load_generator
from .metrics.sampling import generate, interpolation_noise, noise
from .visualize import attention_figure, image_grid, side_by_side_figure

__all__ = ["build_parser", "main"]

#: Images in ``grid.png`` at most.
GRID_LIMIT = 256

#: Images per run in ``beside.png``.
BESIDE_LIMIT = 64


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("generate", "Draw images from a trained torchgan_sagan run.",
                       "output folder (default: RUN/generated)", samples=(64, "images to write, one PNG each"))
    p.add_argument("--truncation", type=float, metavar="T", help="truncate the noise to [-T, T]")
    p.add_argument("--interpolate", type=int, default=8, metavar="STEPS",
                   help="steps of each latent interpolation (0: none)")
    p.add_argument("--rows", type=int, default=4, help="interpolations to draw")
    p.add_argument("--class", "--classes", dest="classes", nargs="+", metavar="NAME|INDEX",
                   help="conditional runs: the classes to draw, by name (the run's class subfolders or labels) "
                   "or index (default: every class, up to 20 rows in classes.png)")
    p.add_argument("--per-class", type=int, default=8, help="conditional runs: images per class in classes.png")
    p.add_argument("--attention", type=int, default=4, metavar="K", help="attention maps of K samples (0: none)")
    p.add_argument("--beside", type=Path, nargs="+", default=[], metavar="OTHER_RUN",
                   help="also draw these runs from the same noise, side by side in beside.png")
    return p


def class_indices(generator, classes: Optional[List[str]]) -> Optional[torch.Tensor]:
    """The class indices of ``classes`` (names, as the run's config records them, or
    indices); every class up to 20 when ``None``; ``None`` for an unconditional generator."""
    if not generator.num_classes:
        if classes:
            raise CommandError("--class given, but this generator is unconditional")
        return None
    if not classes:
        return torch.arange(min(generator.num_classes, 20))
    names = list(getattr(getattr(generator, "config", None), "class_names", ()) or ())
    found = []
    for c in map(str, classes):
        if c in names:
            found.append(names.index(c))
        elif c.lstrip("-").isdigit() and 0 <= int(c) < generator.num_classes:
            found.append(int(c))
        else:
            known = (f"its classes are {', '.join(names[:10])}{', ...' if len(names) > 10 else ''} (or 0 to "
                     f"{generator.num_classes - 1})") if names else f"it has classes 0 to {generator.num_classes - 1}"
            raise CommandError(f"--class {c!r} is not a class of this generator: {known}")
    return torch.tensor(found)


def _beside_generator(other_run: Path, generator, args: argparse.Namespace, device):
    """The generator of an ``--beside`` run, checked (before any work) to take the
    noise and labels of ``generator``."""
    other = load_generator(other_run, device=device, trust_checkpoint=args.trust_checkpoint)
    if (other.encoding_dims, other.num_classes) != (generator.encoding_dims, generator.num_classes):
        raise CommandError(
            f"--beside {other_run}: its generator takes {other.encoding_dims}-dim noise and "
            f"{other.num_classes} classes, {args.run}'s {generator.encoding_dims} and "
            f"{generator.num_classes}; only runs with one noise size and class count can share noise")
    return other


def _title(run: Path) -> str:
    """A run's name in a figure: its folder (a checkpoint's run folder)."""
    return run.name if run.is_dir() else f"{run.parent.parent.name}/{run.name}"


def _write_gif(frames: torch.Tensor, path: Path) -> None:
    """Frames (T, 3, H, W) in [0, 1] as a looping GIF that goes there and back."""
    from PIL import Image

    pictures = [Image.fromarray((f.permute(1, 2, 0) * 255).round().byte().numpy()) for f in frames]
    pictures += pictures[-2:0:-1]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=120, loop=0)


def run(args: argparse.Namespace) -> None:
    require_at_least(args, 1, "num", "per_class", "batch_size")
    require_at_least(args, 0, "interpolate", "rows", "attention")
    if args.interpolate == 1:
        raise CommandError("--interpolate needs at least 2 steps (or 0 for none)")
    device = parse_device(args.device)
    generator = load_generator(args.run, device=device, trust_checkpoint=args.trust_checkpoint)
    classes = class_indices(generator, args.classes)
    others = [(other_run, _beside_generator(other_run, generator, args, device)) for other_run in args.beside]
    out = args.out or (args.run if args.run.is_dir() else args.run.parent) / "generated"
    (out / "images").mkdir(parents=True, exist_ok=True)
    common = dict(device=device, batch_size=args.batch_size)

    labels = None if classes is None else classes.repeat(args.num // len(classes) + 1)[: args.num]
    sample_z = noise(args.num, generator.encoding_dims, seed=args.seed, truncation=args.truncation)
    images = generate(generator, z=sample_z, labels=labels, progress=args.num > args.batch_size, **common)
    for i, image in enumerate(images):
        save_image(((image + 1) / 2).clamp(0, 1), out / "images" / f"{i:06d}.png")
    save_image(image_grid(images[:GRID_LIMIT]), out / "grid.png")
    written = [f"{args.num} images in {out / 'images'}", str(out / "grid.png")]

    if args.interpolate and args.rows:
        z = interpolation_noise(generator.encoding_dims, args.rows, args.interpolate, seed=args.seed + 1,
                                truncation=args.truncation)
        row_labels = None if classes is None else classes[torch.arange(args.rows) % len(classes)]
        path_labels = None if row_labels is None else row_labels.repeat_interleave(args.interpolate)
        frames = generate(generator, z=z, labels=path_labels, **common)
        save_image(image_grid(frames, nrow=args.interpolate), out / "interpolation.png")
        steps = frames.view(args.rows, args.interpolate, *frames.shape[1:]).transpose(0, 1)  # (T, rows, C, H, W)
        _write_gif(torch.stack([image_grid(step, nrow=args.rows) for step in steps]), out / "interpolation.gif")
        written += [str(out / "interpolation.png"), str(out / "interpolation.gif")]

    if classes is not None:
        per_class = classes.repeat_interleave(args.per_class)
        z = noise(len(per_class), generator.encoding_dims, seed=args.seed + 2, truncation=args.truncation)
        save_image(image_grid(generate(generator, z=z, labels=per_class, **common), nrow=args.per_class),
                   out / "classes.png")
        written.append(str(out / "classes.png"))

    if others:
        n = min(args.num, BESIDE_LIMIT)
        panels = [(_title(args.run), images[:n])]
        panels += [(_title(other_run), generate(other, z=sample_z[:n], labels=None if labels is None else labels[:n],
                                                **common)) for other_run, other in others]
        side_by_side_figure(panels, out / "beside.png")
        written.append(str(out / "beside.png"))

    if args.attention and generator.attn_resolutions:
        z = noise(args.attention, generator.encoding_dims, seed=args.seed + 3, truncation=args.truncation)
        attn_labels = None if classes is None else classes[torch.arange(args.attention) % len(classes)]
        attention_figure(generator, z.to(device), out / "attention.png",
                         labels=None if attn_labels is None else attn_labels.to(device))
        written.append(str(out / "attention.png"))
    print("Wrote " + ", ".join(written))


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("generate", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
