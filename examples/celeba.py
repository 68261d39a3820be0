"""Train a SAGAN on CelebA 64x64 with torchgan's Trainer, or on embedded faces.

    python examples/celeba.py                                   # embedded faces, a few CPU minutes
    python examples/celeba.py --data-root ~/data/celeba         # CelebA (img_align_celeba or its parent)
    python examples/celeba.py --data-root DIR --loss wasserstein_gp --epochs 5
    python examples/celeba.py --out runs/faces --resume --epochs 80
    python examples/celeba.py --resume auto                     # continue the newest run if any, else start
    python examples/celeba.py --ema 0.999 --diffaugment              # moving-average G, DiffAugment
    python examples/celeba.py --config sagan_cond_digits_32 --data-root DIR   # class-conditional: DIR/CLASS/*.png
    torchrun --nproc_per_node 4 examples/celeba.py --data-root ~/data/celeba   # DDP, 4 processes

With no ``--data-root`` it trains on the 100 face crops of Labeled Faces in the Wild that
ship with scikit-image (grayscale, 32x32, with their mirror images), so it runs anywhere
without a download. Everything goes to ``--out``: a sample grid per epoch from fixed noise
(``samples/``), checkpoints (``checkpoints/``, written atomically), the config
(``config.json``), TensorBoard logs (``logs/``, ``tensorboard --logdir OUT/logs``: losses,
samples, attention maps and gains, and Inception FID-1k with ``--inception-weights``),
torchgan's epoch summaries (``train.log``; ``--verbose`` prints them instead of the
progress bar), and at the end ``real_vs_fake.png``, ``attention.png`` and a memorization
check (each sample's nearest training image, ``nearest.png``). Afterwards,
``python -m torchgan_sagan.generate OUT`` (and ``.evaluate``, ``.export``) take the folder.

Class-conditional configs (``sagan_cond_*``, ``sagan_resnet_imagenet_128``,
``sagan_resnet_cifar_32``, or ``--num-classes N``) train on labelled images: a
``--data-root`` with one subfolder per class (ImageNet's and ``ImageFolder``'s layout),
or any folder with ``--labels FILE`` (CSV rows ``file,class`` or a JSON object); without
``--data-root``, the embedded digits and their ten classes. The number of classes comes
from the data (said in one line when it differs from the config's; a ``--num-classes``
that differs is refused), and the class names are recorded in the run's config:
``python -m torchgan_sagan.generate RUN --class NAME`` draws one.

SIGTERM, SIGUSR1 (SLURM's ``--signal``) and Ctrl-C finish the iteration, write a checkpoint
and exit with status 75 (130 after Ctrl-C): ``--resume auto`` continues exactly
(docs/long-runs.md).

A ``--data-root`` folder is decoded once into an image cache (a uint8 array on disk,
rebuilt when the files or the size, crop or channels change; ``--cache-dir``), and
batches come from it without decoding: on the GPU itself where the images fit, and the
embedded faces take the same path. ``--no-image-cache`` decodes every image in every
epoch with a ``DataLoader`` instead.

Every field of the config has a flag (``--step-channels``, ``--g-lr``, ``--attn-layout``,
``--ema-decay``, ...; ``--help`` lists them with their meaning); a flag not given keeps
the config's value.

Under ``torchrun`` the same command trains with ``DistributedDataParallel``
(``torchgan_sagan.trainer.distributed.DistributedTrainer``): one process per GPU (or CPU
processes with the gloo backend), the data sharded, ``--batch-size`` per process, and
only rank 0 printing, logging and writing files.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, List, NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchgan.trainer import Trainer

from torchgan_sagan import get_config, list_configs, make_trainer
from torchgan_sagan.data import (
    DeviceBatches,
    ImageFiles,
    build_image_cache,
    embedded_digits,
    embedded_faces,
    find_images,
    folder_transform,
    to_unit_range,
)
from torchgan_sagan.data.folders import evenly_spaced, resolve_crop
from torchgan_sagan.data.labels import class_subfolders, labelled_images
from torchgan_sagan.metrics import InceptionFID, generate, memorization_report
from torchgan_sagan.metrics.inception import inception_weights
from torchgan_sagan.recipe.cli import CommandError as CliError
from torchgan_sagan.recipe.cli import OneLineErrors, add_config_flags, config_overrides, crop_value, parse_device
from torchgan_sagan.trainer.checkpoints import (UnreadableCheckpointError, UntrustedCheckpointError, find_checkpoints,
                                                latest_intact_checkpoint)
from torchgan_sagan.trainer.divergence import DivergenceError, clear_mark, read_mark
from torchgan_sagan.trainer.distributed import init_distributed, launched_by_torchrun
from torchgan_sagan.trainer.monitoring import AttentionLogger, RunProgress, torchgan_output
from torchgan_sagan.trainer.preemption import EXIT_INTERRUPTED, StopRequested
from torchgan_sagan.trainer.run_folder import read_config, record_change, values_the_run_left
from torchgan_sagan.trainer.run_lock import RunFolderLocked, acquire_run_lock, claim_new_folder
from torchgan_sagan.trainer.trainer import cuda_settings
from torchgan_sagan.visualize import attention_figure, image_grid, nearest_grid, real_vs_fake_figure

EMBEDDED_CONFIG = "sagan_faces_32"
FOLDER_CONFIG = "sagan_celeba_64"


#: Config fields without a flag here, and why.
EXCLUDED_FIELDS = {
    "class_names": "recorded from the data (its class subfolders or --labels)",
    "source": "recorded from the config's docstring",
}


def resolved_crop(args):
    """The crop asked for, or the folder's default (CelebA's 160, else the largest square)."""
    return resolve_crop(args.data_root, args.crop)


def say_skipped(skipped, reasons, crop, say) -> None:
    """The files left out, the first few with why, and the way out for crops."""
    if not skipped:
        return
    shown = "; ".join(f"{path} ({reasons.get(str(path)) or 'cannot be decoded'})" for path in skipped[:3])
    small = any("smaller than the center crop" in (reasons.get(str(p)) or "") for p in skipped)
    say(f"Skipped {len(skipped)} file(s): {shown}" + ("; ..." if len(skipped) > 3 else "") + "."
        + (f" Images smaller than --crop {crop} would be padded with black: pass a smaller --crop, --crop square "
           f"or --crop 0 to keep them." if small else ""))


def resume_mode(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError(f"--resume takes nothing or 'auto', got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrors(
        prog="celeba.py", description="Train a SAGAN with torchgan's Trainer on CelebA, or on embedded faces.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-root", type=Path, help="CelebA's img_align_celeba folder, its parent, "
                   "or any folder tree of images; omitted: the embedded LFW faces")
    p.add_argument("--config", choices=list_configs(), help=f"registered config "
                   f"(default: {FOLDER_CONFIG} with --data-root, else {EMBEDDED_CONFIG})")
    p.add_argument("--labels", type=Path, metavar="FILE", help="each image's class, for class-conditional training: "
                   "CSV rows file,class or a JSON object {file: class}, files relative to --data-root; without it a "
                   "conditional config takes the classes from --data-root's subfolders")
    p.add_argument("--crop", type=crop_value, help="center crop before resizing folder images: a size in "
                   "pixels, 'square' (the largest square), 0 (none); default: 160 for CelebA's img_align_celeba, "
                   "'square' for other folders")
    p.add_argument("--max-images", type=int, help="use only N images (smoke runs): the first N, "
                   "or for classes N spread evenly over them")
    p.add_argument("--seed", type=int, help="seed of the weights, the noise and the data order (default 0; "
                   "a resumed run keeps its own)")
    p.add_argument("--num-workers", type=int, help="processes that decode the folder's images into "
                   "the cache, or DataLoader workers with --no-image-cache (default: min(4, CPUs))")
    p.add_argument("--image-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="decode --data-root's images once into a uint8 cache and serve batches from it "
                   "(on the GPU where they fit); --no-image-cache decodes every image in every epoch")
    p.add_argument("--cache-dir", type=Path, help="where the image cache goes (default: $TORCHGAN_SAGAN_CACHE "
                   "or ~/.cache/torchgan_sagan, under images/)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, help="output folder (default: runs/<config>)")
    p.add_argument("--resume", nargs="?", const=True, type=resume_mode, metavar="auto",
                   help="continue from the newest "
                   "intact checkpoint in --out (without --out: the newest run folder of the config); "
                   "--resume auto: continue if there is one, else start (for restarts under torchrun)")
    p.add_argument("--allow-data-change", action="store_true", help="let --resume go on with other data than "
                   "the run trained on (another folder or the embedded faces, crop, image count, processes)")
    p.add_argument("--trust-checkpoint", action="store_true", help="let --resume load a checkpoint that holds "
                   "objects outside the allowlist (it runs their code)")
    p.add_argument("--verbose", action="store_true", help="print torchgan's epoch summaries instead of one "
                   "progress bar (without it they go to OUT/train.log)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="cuDNN autotuning (on with CUDA unless turned off)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="TF32 matrix products and convolutions (on with CUDA unless turned off)")
    p.add_argument("--inception-weights", nargs="?", const=True, type=Path, metavar="FILE",
                   help="Inception FID-1k against the training images after every epoch (TensorBoard tag "
                   "Metrics/FID-1k_Inception-v3), with torch-fidelity's weights from FILE, or without FILE the "
                   "package's cached copy (fetched once)")
    add_config_flags(p, exclude=EXCLUDED_FIELDS)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def positive(name: str, value):
    if value is not None and value < 1:
        raise CliError(f"{name} must be at least 1, got {value}")
    return value


class TrainingData(NamedTuple):
    """The training images (an array N x C x H x W that DeviceBatches serves, or, with
    --no-image-cache, an ImageFiles dataset for a DataLoader), each one's class (``None``
    for unconditional training) and the class names."""

    images: Any
    labels: Optional[np.ndarray] = None
    classes: Optional[List[str]] = None


def embedded_data(args, cfg, say) -> TrainingData:
    """The embedded faces, or for a conditional config the embedded digits and their classes."""
    if args.labels is not None:
        raise CliError("--labels names the classes of --data-root's images; give --data-root too")
    if cfg.conditional:
        images, labels = embedded_digits(cfg.image_size).tensors
        images, labels = images[: args.max_images], labels[: args.max_images]
        what = f"the embedded digits (scikit-learn's, {len(images)} images in 10 classes"
    else:
        images = embedded_faces(cfg.image_size, max_images=args.max_images).tensors[0]
        labels = None
        what = f"the embedded faces (scikit-image's LFW subset, {len(images) // 2} faces and their mirror images"
    if cfg.image_channels != 1:  # grayscale, repeated into each channel
        images = images.repeat(1, cfg.image_channels, 1, 1)
    say(f"No --data-root given: training on {what}, grayscale {cfg.image_size}x{cfg.image_size}).")
    return TrainingData(images, None if labels is None else labels.numpy(),
                        [str(i) for i in range(10)] if cfg.conditional else None)


def folder_files(args, cfg, say):
    """The folder's image files, and for conditional training their classes and the class names."""
    try:
        if not (cfg.conditional or args.labels is not None):
            files = find_images(args.data_root)
            names = class_subfolders(args.data_root, files)
            if names and len(names) > 1:
                say(f"{args.data_root} has {len(names)} class subfolders; {args.config or default_config(args)} is "
                    f"unconditional and trains on all their images as one (a conditional --config, or "
                    f"--num-classes {len(names)}, trains with the classes).")
            return files[: args.max_images], None, None
        found = labelled_images(args.data_root, args.labels)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from err
    if found.unlabelled:
        say(f"{len(found.unlabelled)} image(s) in {args.data_root} have no class in {args.labels} and are left out "
            f"(first: {found.unlabelled[0]}).")
    if found.missing:
        say(f"{len(found.missing)} file(s) named in {args.labels} are not among the images (first: "
            f"{found.missing[0]}).")
    keep = evenly_spaced(range(len(found.files)), args.max_images)  # every class keeps its share
    return [found.files[i] for i in keep], np.asarray(found.labels, dtype=np.int64)[keep], found.classes


def build_dataset(args, cfg, say=print, *, rank=0, distributed=False) -> TrainingData:
    """The training images and, for a conditional config or --labels, their classes:
    the embedded data, the folder's image cache, or (--no-image-cache) an ImageFiles
    dataset."""
    if args.data_root is None:
        return embedded_data(args, cfg, say)
    files, labels, classes = folder_files(args, cfg, say)
    crop = resolved_crop(args)
    what = "" if classes is None else f" in {len(classes)} classes"
    if args.image_cache:
        # One process decodes; under torchrun the others wait, then read its cache.
        if distributed and rank != 0:
            torch.distributed.barrier()
        try:
            cache = build_image_cache(files, cfg.image_size, crop=crop, channels=cfg.image_channels,
                                      cache_dir=args.cache_dir, workers=loader_workers(args), progress=rank == 0,
                                      labels=labels)
        except ValueError as err:
            raise CliError(str(err)) from err
        finally:
            if distributed and rank == 0:
                torch.distributed.barrier()
        say(f"Training on {len(cache)} images{what} from {args.data_root} ({cfg.image_size}x{cfg.image_size}), "
            + (f"decoded once in {cache.seconds:.0f} s" if cache.built else "decoded before")
            + f" into {cache.path}.")
        say_skipped(cache.skipped, cache.reasons, crop, say)
        return TrainingData(cache.images, cache.labels, classes)
    transform = folder_transform(cfg.image_size, crop=crop, channels=cfg.image_channels)
    try:
        dataset = ImageFiles(files, transform, labels=labels)
    except ValueError as err:
        raise CliError(str(err)) from err
    say(f"Training on {len(dataset)} images{what} from {args.data_root} ({cfg.image_size}x{cfg.image_size}).")
    say_skipped(dataset.skipped, {}, crop, say)
    return TrainingData(dataset, None if labels is None else np.asarray(dataset.labels), classes)


def first_names(classes, shown: int = 5) -> str:
    """The first ``shown`` class names, for a message."""
    return ", ".join(classes[:shown]) + (", ..." if len(classes) > shown else "")


def with_classes(cfg, classes: List[str], given: Optional[int], config_name: str, say):
    """``cfg`` with the data's classes: their number (a --num-classes that differs is
    refused; a preset's that differs is said) and names."""
    if given is not None and given != len(classes):
        raise CliError(f"--num-classes {given}, but the data has {len(classes)} classes ({first_names(classes)}); "
                       f"drop --num-classes to take the data's")
    if cfg.num_classes and cfg.num_classes != len(classes):
        say(f"{config_name} has {cfg.num_classes} classes; the data has {len(classes)}, so it trains with "
            f"{len(classes)}.")
    return cfg.replace(num_classes=len(classes), class_names=tuple(classes))


def loader_workers(args) -> int:
    return args.num_workers if args.num_workers is not None else min(4, os.cpu_count() or 1)


def first_images(data, count: int) -> torch.Tensor:
    """The first ``count`` training images as floats in [-1, 1]."""
    if isinstance(data, Dataset):
        return torch.stack([data[i][0] for i in range(min(len(data), count))])
    return to_unit_range(torch.as_tensor(np.asarray(data[:count])))


def run_folders(base: Path):
    """``base``, ``base-2``, ``base-3``, ...: the folders of one config's runs, in order."""
    yield base
    n = 2
    while True:
        yield base.with_name(f"{base.name}-{n}")
        n += 1


def has_checkpoints(out: Path) -> bool:
    return bool(find_checkpoints(out / "checkpoints"))


def choose_out(args, config_name: str) -> Path:
    """Where this run goes. Without --out: a new run creates the first of runs/<config>,
    runs/<config>-2, ... that does not exist yet, and --resume takes the last one that
    does (refused later if a live job holds it). An explicit --out that holds
    checkpoints is only resumed, never overwritten."""
    if args.out is not None:
        if not args.resume and has_checkpoints(args.out):
            raise CliError(f"--out {args.out} holds the checkpoints of an earlier run; continue it with --resume "
                           f"(or --resume auto), or start over in another --out (or after removing "
                           f"{args.out / 'checkpoints'})")
        return args.out
    base = Path("runs") / config_name
    newest = None
    for folder in run_folders(base):
        if not folder.exists():
            break
        newest = folder
    if args.resume:
        return newest or base
    return claim_new_folder(run_folders(base))  # created here: a job started in the same second takes the next


def shared_out(args, config_name: str, rank: int, distributed: bool) -> Path:
    """Rank 0's choice of folder (:func:`choose_out`), on every rank: only rank 0
    chooses, since choosing a new folder creates it."""
    if not distributed:
        return choose_out(args, config_name)
    choice = [str(choose_out(args, config_name)) if rank == 0 else None]
    torch.distributed.broadcast_object_list(choice, src=0)
    return Path(choice[0])


def resume_from(out: Path, trust: bool, say):
    """The newest checkpoint of the run that reads, and its contents; newer damaged ones
    are reported."""
    folder = out / "checkpoints"
    if not find_checkpoints(folder):
        raise CliError(f"--resume: no checkpoint (*.model) in {folder}; run once without --resume first")
    try:
        found, contents, damaged = latest_intact_checkpoint(folder, trust=trust)
    except (UntrustedCheckpointError, UnreadableCheckpointError) as err:  # not damage: no falling back
        raise CliError(f"--resume: {err}") from err
    for path, err in damaged:
        say(f"Skipping {path}: {err}")
    if found is None:
        raise CliError(f"--resume: none of the checkpoints in {folder} can be read; start a new run "
                       f"(without --resume) or restore a copy")
    if damaged:
        say(f"Resuming from the newest intact checkpoint, {found}: what came after it is trained again.")
    return found, contents


class Diverged(Exception):
    """The run folder is marked: an earlier launch stopped on divergence (exit status 3)."""


def resumed_config(args, out: Path, checkpoint_path: Path, checkpoint: dict, say):
    """The config a resumed run trains with: the checkpoint's own, with the flags given
    on the command line (a given --config is compared field by field); a change to what
    trains is refused. A flag that gives back a value the run itself changed (a
    rollback's halved rates, with the command line a restart repeats) changes nothing.
    Returns the config and its changes ``{field: (old, new)}``."""
    given = config_overrides(args)
    try:
        saved = read_config(checkpoint_path, checkpoint)
    except ValueError:  # written before checkpoints recorded their config
        say(f"{checkpoint_path} records no config; resuming with the preset's and the flags given.")
        return get_config(args.config or default_config(args), **given), {}
    if args.config:  # field by field, but for the classes, which came from the data
        preset = get_config(args.config, **given)
        given = {name: getattr(preset, name) for name in saved.to_dict()["fields"]
                 if name in given or name not in ("num_classes", "class_names")}
    left = values_the_run_left(out)
    for name, value in list(given.items()):
        if value != getattr(saved, name) and value in left.get(name, ()):  # the run's own change stands
            say(f"--{name.replace('_', '-')} {value:g} is what this run trained with before it changed {name} "
                f"itself (a rollback); it keeps {getattr(saved, name):g}. Pass another value to change it.")
            del given[name]
    try:
        return saved.resumed_with(**given)
    except ValueError as err:
        raise CliError(f"--resume: {err}") from err


def resumed_seed(given, checkpoint: dict) -> int:
    """The seed a resumed run keeps (it fixes the data order of every epoch): the one its
    checkpoint records; another one given is refused."""
    saved = checkpoint.get("run_seed")
    if saved is None:  # written before checkpoints recorded it
        return 0 if given is None else given
    if given is not None and given != saved:
        raise CliError(f"--resume: the run trained with --seed {saved} (its data order and noise); drop --seed "
                       f"or pass {saved}, or start a new run")
    return saved


def data_source(args, cfg, training: TrainingData, world: int) -> dict:
    """What the run trains on, as its checkpoints record it: the folder (resolved) or the
    embedded data, the crop, the image size and channels, the number of images, the
    classes (conditional runs), and the number of processes (which multiplies the batch)."""
    embedded = "embedded digits" if training.classes is not None else "embedded LFW faces"
    return {"source": embedded if args.data_root is None else "folder",
            "folder": None if args.data_root is None else str(args.data_root.expanduser().resolve()),
            "crop": None if args.data_root is None else resolved_crop(args),
            "image_size": cfg.image_size, "channels": cfg.image_channels, "images": len(training.images),
            "classes": training.classes, "processes": world}


def check_same_data(recorded: dict, current: dict, allowed: bool, say) -> None:
    """A resume trains on the data its run trained on: each difference is named in one
    line and refused, unless ``allowed`` (--allow-data-change). A folder that moved
    (staged to a job's scratch disk) with the same images is only said."""
    differences = [f"{key} {recorded.get(key)!r} -> {current[key]!r}" for key in current
                   if key != "folder" and recorded.get(key) != current[key]]
    if differences and not allowed:
        raise CliError(f"--resume: the run trained on other data: {'; '.join(differences)}. Resume with what it "
                       f"trained on (--data-root, --crop, --max-images, the number of processes), or pass "
                       f"--allow-data-change to go on with this on purpose")
    if differences:
        say(f"Resuming on other data, as asked (--allow-data-change): {'; '.join(differences)}.")
    elif recorded.get("folder") != current["folder"]:
        say(f"The data moved: {recorded.get('folder')} -> {current['folder']} (the same {current['images']} images).")


def check_divergence_mark(out: Path, cfg, changes: dict, rank: int, say) -> None:
    """A folder an earlier launch left marked as diverged continues only when the user
    changes something that may help: the learning rates, or on_divergence to 'rollback'
    (or more max_rollbacks). A restart with the same command line is no change (see
    :func:`resumed_config`), and stops again. Then the mark is removed."""
    mark = read_mark(out)
    if mark is None:
        return
    other_rates = any(key in mark and getattr(cfg, key) != mark[key] for key in ("g_lr", "d_lr")) \
        or any(key in changes for key in ("g_lr", "d_lr"))
    if not other_rates and not (cfg.on_divergence == "rollback" and
                                ("on_divergence" in changes or "max_rollbacks" in changes)):
        raise Diverged(mark.get("message", "training diverged in an earlier launch"))
    say(f"{out} was marked as diverged; continuing with g_lr {cfg.g_lr:g}, d_lr {cfg.d_lr:g}, "
        f"on_divergence {cfg.on_divergence}.")
    if rank == 0:
        clear_mark(out)


def default_config(args) -> str:
    return FOLDER_CONFIG if args.data_root else EMBEDDED_CONFIG


def run(args) -> int:
    positive("--max-images", args.max_images)
    if args.num_workers is not None and args.num_workers < 0:
        raise CliError(f"--num-workers must be 0 or more, got {args.num_workers}")

    config_name = args.config or default_config(args)
    try:
        cfg = get_config(config_name, **config_overrides(args))
    except ValueError as err:
        raise CliError(str(err)) from err
    distributed = launched_by_torchrun()
    if distributed:
        rank, world, device = init_distributed(None if args.device == "auto" else
                                               ("gloo" if args.device == "cpu" else "nccl"))
    else:
        rank, world, device = 0, 1, parse_device(args.device)
    say = print if rank == 0 else (lambda *a, **k: None)
    out = args.chosen_out = shared_out(args, config_name, rank, distributed)
    with run_folder_lock(out, rank, say):
        return train_into(out, args, cfg, config_name, rank, world, device, distributed, say)


@contextlib.contextmanager
def run_folder_lock(out: Path, rank: int, say):
    """``out`` locked for this job (by rank 0 for all of them) while it trains; another
    live job's lock is a one-line error naming it."""
    if rank != 0:
        yield
        return
    try:
        lock = acquire_run_lock(out, say=say)
    except RunFolderLocked as err:
        raise CliError(str(err)) from err
    with lock:
        yield


def train_into(out: Path, args, cfg, config_name: str, rank: int, world: int, device: torch.device,
               distributed: bool, say) -> int:
    """The run in its folder: resume or start, the data, the trainer, training, and the
    final pictures."""
    if args.resume == "auto" and not has_checkpoints(out):
        say(f"--resume auto: no checkpoint in {out / 'checkpoints'} yet, so this run starts there.")
        args.resume = None
    elif args.out is None and not args.resume:
        say(f"A new run: {out}")
    checkpoint, changes, recorded_data = None, {}, None
    if args.resume:
        checkpoint, contents = resume_from(out, args.trust_checkpoint, say)
        cfg, changes = resumed_config(args, out, checkpoint, contents, say)
        args.seed = resumed_seed(args.seed, contents)
        recorded_data = contents.get("data_source")
        del contents
    if args.seed is None:
        args.seed = 0
    check_divergence_mark(out, cfg, changes, rank, say)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    training = build_dataset(args, cfg, say, rank=rank, distributed=distributed)
    dataset = training.images
    if training.classes is not None and checkpoint is None:  # a new run takes the data's classes
        cfg = with_classes(cfg, training.classes, getattr(args, "num_classes", None), config_name, say)
    elif training.classes is not None and list(cfg.class_names) != training.classes:
        raise CliError(f"--resume: the run trained on {cfg.num_classes} classes ({first_names(cfg.class_names)}), "
                       f"and this data has {len(training.classes)} ({first_names(training.classes)}); resume "
                       f"with the data it trained on")
    data = data_source(args, cfg, training, world)
    if recorded_data is not None:
        check_same_data(recorded_data, data, args.allow_data_change, say)
    if cfg.batch_size * world > len(dataset):
        raise CliError(f"batch size {cfg.batch_size}"
                       + (f" x {world} processes" if world > 1 else "")
                       + f" is larger than the dataset ({len(dataset)} images); pass a smaller --batch-size")
    if not isinstance(dataset, Dataset):
        loader = DeviceBatches(dataset, cfg.batch_size, device=device, seed=args.seed, rank=rank, world=world,
                               labels=training.labels)
    else:
        common = dict(batch_size=cfg.batch_size, drop_last=True, num_workers=loader_workers(args),
                      pin_memory=device.type == "cuda")
        if distributed:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                         drop_last=True)
            loader = DataLoader(dataset, sampler=sampler, **common)
        else:  # epoch e's order is seed + e's, so that a resumed run sees the same order
            sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=args.seed,
                                         drop_last=True)
            loader = DataLoader(dataset, sampler=sampler, **common)
    if world > 1:
        say(f"Distributed: {world} processes, backend {torch.distributed.get_backend()}, "
            f"global batch {cfg.batch_size * world}.")

    extras = "".join([f", EMA decay {cfg.ema_decay}" if cfg.ema_decay is not None else "",
                      f", DiffAugment {cfg.diffaugment}" if cfg.diffaugment else ""])
    cuda = cuda_settings(device, cudnn_benchmark=getattr(args, "cudnn_benchmark", None),
                         tf32=getattr(args, "tf32", None))
    extras += "".join(f", {name} {'on' if on else 'off'}" for name, on in cuda.items())
    if cfg.conditional:
        extras = f", {cfg.num_classes} classes" + extras
    say(f"Config {config_name}: loss {cfg.loss}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"step_channels {cfg.step_channels}{extras}, device {device}. Output: {out}")
    # Fixed noise, the same on every resume, for comparable sample grids.
    test_noise = [torch.randn(cfg.sample_size, cfg.encoding_dims,
                              generator=torch.Generator().manual_seed(args.seed + 1)).to(device)]
    if cfg.conditional:  # classes 0, 1, ..., in turn
        test_noise.append((torch.arange(cfg.sample_size) % cfg.num_classes).to(device))
    metrics = []
    if args.inception_weights is not None:
        try:
            weights = inception_weights(None if args.inception_weights is True else args.inception_weights)
        except FileNotFoundError as err:
            raise CliError(f"--inception-weights: {err}") from err
        reference = first_images(dataset, 1000)
        metrics.append(InceptionFID(reference, weights, num_samples=min(len(dataset), 1000)))
        say(f"After every epoch: {metrics[-1].tag} against {len(reference)} training images (TensorBoard).")
    trainer = make_trainer(cfg, out=out, device=device, distributed=distributed, test_noise=test_noise,
                           metrics=metrics or None)
    AttentionLogger.attach(trainer, *(t[:4] for t in test_noise))
    if checkpoint is not None:
        trainer.load_model(str(checkpoint), trust_checkpoint=args.trust_checkpoint)
        if changes and rank == 0:
            record_change(out, cfg, changes, "resumed with " + " ".join(sorted(f"--{name.replace('_', '-')}"
                                                                                for name in changes)),
                          trainer.iteration)
        if trainer.start_epoch >= cfg.epochs:
            say(f"The checkpoint has {trainer.start_epoch} epochs already, and --epochs is "
                f"{cfg.epochs} (a total): nothing to train. Pass a larger --epochs.")
        else:
            say(f"Resuming at epoch {trainer.start_epoch + 1} of {cfg.epochs}"
                + (f", batch {trainer.start_batch + 1}" if trainer.start_batch else "")
                + "".join(f"; {name} {old!r} -> {new!r}" for name, (old, new) in changes.items()
                          if name != "epochs") + ".")
    # The nets start identical on every process; the noise each draws should not be.
    torch.manual_seed(args.seed + rank)

    start = time.time()
    # A bar on a terminal; a line per epoch in a batch system's log (no carriage returns).
    progress = RunProgress(loader, trainer, show="auto" if rank == 0 and not args.verbose else False)
    # torchgan's per-epoch summaries go to the console with --verbose, else to train.log.
    try:
        with torchgan_output(out / "train.log" if rank == 0 else None, verbose=args.verbose):
            trainer.run_seed = args.seed  # in every checkpoint, for the resume
            trainer.data_source = data  # likewise: a resume checks it trains on the same data
            trainer(progress, save_items=["run_seed", "data_source"])
    except BaseException:
        progress.close(failed=True)
        raise
    progress.close()
    trainer.logger.close()
    say(f"Trained for {time.time() - start:.0f} s." + ("" if args.verbose else
                                                        f" torchgan's epoch summaries: {out / 'train.log'}"))
    if rank == 0:
        finish(trainer, loader, out, test_noise)
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def finish(trainer: Trainer, loader, out: Path, test_noise: List[torch.Tensor]) -> None:
    """Final pictures: real next to generated, and the attention maps (``test_noise``:
    the noise, and the classes for a conditional generator)."""
    from torchvision.utils import save_image

    generator = trainer.generator.eval()
    real = next(iter(loader))[0][: len(test_noise[0])]
    with torch.no_grad():
        fake = generator(*test_noise).cpu()
    save_image(image_grid(fake), out / "samples" / "final.png")
    real_vs_fake_figure(real, fake[: len(real)], out / "real_vs_fake.png")
    if getattr(generator, "attn_resolutions", None):  # a generator of other network_params may have none
        attention_figure(generator, test_noise[0][:4], out / "attention.png",
                         labels=test_noise[1][:4] if len(test_noise) > 1 else None)
    memorization_check(generator, loader, out)
    print(f"Samples: {out / 'samples'}; comparison: {out / 'real_vs_fake.png'}; "
          f"attention: {out / 'attention.png'}; TensorBoard: tensorboard --logdir {out / 'logs'}")


def memorization_check(generator, loader, out: Path, max_real: int = 1000) -> None:
    """Generation or copying? Each sample's nearest training image (up to ``max_real`` of
    them) in pixel space, against the training images' own nearest neighbours, for as
    many samples as training images compared, from 100 to 1000; ``nearest.png`` shows
    eight samples over their nearest training images."""
    from torchvision.utils import save_image

    real = []
    for batch in loader:
        real.append(batch[0])
        if sum(len(r) for r in real) >= max_real:
            break
    real = torch.cat(real)[:max_real]
    fake = generate(generator, min(max_real, max(100, len(real))), seed=12345)
    report = memorization_report(fake, real)
    save_image(nearest_grid(fake, real, report["indices"]), out / "nearest.png")
    print(f"Memorization check ({len(real)} training images): a sample's nearest training image is at "
          f"{report['sample_to_train']['median']:.2f} (median), a training image's nearest other one at "
          f"{report['train_to_train']['median']:.2f}; {report['verdict']}; {out / 'nearest.png'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except CliError as err:
        print(f"celeba.py: error: {err}", file=sys.stderr)
        return 2
    except (DivergenceError, Diverged) as err:
        print(f"celeba.py: error: {err}", file=sys.stderr)
        return 3
    except StopRequested as stop:
        print(f"celeba.py: stopped by {stop.name} at iteration {stop.iteration}, after writing {stop.checkpoint}; "
              f"continue with --resume auto (exit status {stop.exit_status})", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training
        out = getattr(args, "chosen_out", None)
        kept = out is not None and has_checkpoints(out)
        print("celeba.py: interrupted; " + ("the newest checkpoint is kept (--resume continues from it)" if kept
                                            else "no checkpoint had been written"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"celeba.py: error: the disk is full ({err.filename or 'writing the run'}); the checkpoints "
              f"written before are intact: free space, then continue with --resume", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
