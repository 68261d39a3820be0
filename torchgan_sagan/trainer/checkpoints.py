"""Checkpoint files, read without trusting them.

A torchgan checkpoint is a pickle: besides tensors it holds the loss and metric
objects of the run. :func:`load_checkpoint` reads it with ``torch.load(...,
weights_only=True)`` and an allowlist of exactly the classes such a checkpoint holds:
torchgan's losses and metrics, registered here, and this package's, which the modules
that define them register (:mod:`torchgan_sagan.files`), under their old module paths
too. Anything else in the file is refused with an :class:`UntrustedCheckpointError`
that names it; ``trust=True`` (``--trust-checkpoint`` on the command lines) loads it
anyway, as torch did before 2.6 and torchgan always assumed. A truncated or corrupt
file raises :class:`CorruptCheckpointError`. Checkpoints are written with
:func:`torchgan_sagan.files.atomic_save`.
"""

from __future__ import annotations

import errno
import inspect
import os
import pathlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torchgan.losses
import torchgan.metrics

# Imported for what they register: the classes their objects pickle.
from .. import losses, metrics  # noqa: F401
from .divergence import non_finite_entries
from ..files import checkpoint_classes, register_checkpoint_class, renaming_pickle_module

__all__ = [
    "load_checkpoint",
    "find_checkpoints",
    "latest_intact_checkpoint",
    "safe_globals",
    "UntrustedCheckpointError",
    "CorruptCheckpointError",
    "UnreadableCheckpointError",
]

PathLike = Union[str, os.PathLike]


class UntrustedCheckpointError(ValueError):
    """The checkpoint holds objects outside the allowlist; loading them runs their code."""


class CorruptCheckpointError(ValueError):
    """The checkpoint cannot be read (truncated, corrupt, or not a torch file)."""


class UnreadableCheckpointError(OSError):
    """The checkpoint cannot be read now, though nothing says it is damaged: no
    permission, an I/O error, a stale network file handle, a quota. ``errno`` is the
    read's."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


#: Read errors that say nothing about the file's contents.
NOT_CORRUPTION = {errno.EACCES, errno.EPERM, errno.EIO, errno.ESTALE, errno.EDQUOT, errno.ENOLCK,
                  getattr(errno, "EREMOTEIO", errno.EIO), errno.ETIMEDOUT}


def _module_classes(module) -> List[type]:
    """The loss and metric classes that ``module`` defines or exports."""
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, (nn.Module, torchgan.metrics.EvaluationMetric))]


for _cls in [*_module_classes(torchgan.losses), *_module_classes(torchgan.metrics),
             pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]:
    register_checkpoint_class(_cls)


def safe_globals() -> List[Any]:
    """The classes a checkpoint of this package may hold (see the module's docstring),
    for ``torch.serialization.safe_globals``."""
    return checkpoint_classes()


def load_checkpoint(path: PathLike, *, trust: bool = False, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """Read a checkpoint without running code from it.

    Tensors land on ``map_location`` (the CPU by default; ``load_state_dict`` copies
    them to a net's device); ``mmap``: they stay in the file until used. Raises
    ``FileNotFoundError``, :class:`CorruptCheckpointError`,
    :class:`UnreadableCheckpointError` (permission, I/O: not damage), or
    :class:`UntrustedCheckpointError` naming the class that is not allowed and the
    opt-in (``trust=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        mmap = mmap and zipfile.is_zipfile(path)  # torch's older, non-zip format cannot be mapped
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap,
                              pickle_module=renaming_pickle_module())
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(err))
        if found is None or "weights_only" not in str(err):
            raise _corrupt(path, err) from err
        raise UntrustedCheckpointError(
            f"{str(path)!r} holds {found.group(1)}, which is not among the classes a checkpoint of "
            f"torchgan_sagan holds; loading it would run its code. If you trust the file, load it with "
            f"trust_checkpoint=True (--trust-checkpoint on the command line)") from None
    except OSError as err:
        if err.errno in NOT_CORRUPTION:
            raise UnreadableCheckpointError(f"{str(path)!r} cannot be read ({err.strerror}); it is not known to be "
                                            f"damaged: fix the access and try again", err.errno) from err
        raise _corrupt(path, err) from err
    except Exception as err:  # torch reports a damaged file in many ways (RuntimeError, KeyError, ...)
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: BaseException) -> CorruptCheckpointError:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return CorruptCheckpointError(f"{str(path)!r} is truncated or corrupt (or not a checkpoint) and cannot be "
                                  f"read ({first_line})")


def find_checkpoints(folder: PathLike) -> List[Path]:
    """The ``*.model`` files of a run's checkpoint folder, the latest modified first
    (:func:`latest_intact_checkpoint` orders by what they record instead)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.model"), key=lambda p: p.stat().st_mtime, reverse=True)


def _progress(contents: Any) -> Tuple[int, int]:
    """(iteration, epoch) a checkpoint records; (-1, -1) where it records neither."""
    if not isinstance(contents, dict):
        return -1, -1
    state = contents.get("train_state") or {}
    return int(state.get("iteration", -1)), int(state.get("epoch", contents.get("epoch", -1)))


def latest_intact_checkpoint(folder: PathLike, *, trust: bool = False
                             ) -> Tuple[Optional[Path], Optional[dict], List[Tuple[Path, CorruptCheckpointError]]]:
    """The newest checkpoint in ``folder`` that reads and whose nets' weights are finite,
    its contents, and the newer ones that did not qualify (each with its error).
    ``(None, None, [...])`` when none reads.

    "Newest" is the furthest trained, by the iteration (then the epoch) each checkpoint
    records, not the file's time, which a copy (``cp -r``, ``rsync -r``) does not keep;
    the files are memory-mapped, so only the tensors of the one chosen are read. An
    untrusted file is not skipped, nor one that cannot be read for a reason other than
    damage (:class:`UnreadableCheckpointError`: permission, I/O, a stale handle): their
    errors propagate."""
    corrupt, readable = [], []
    for order, path in enumerate(find_checkpoints(folder)):  # ties: the latest modified first
        try:
            contents = load_checkpoint(path, trust=trust, mmap=True)
        except CorruptCheckpointError as err:
            corrupt.append((path, err))
            continue
        readable.append((_progress(contents), -order, path, contents))
    for _, _, path, contents in sorted(readable, key=lambda r: r[:2], reverse=True):
        bad = non_finite_entries(contents) if isinstance(contents, dict) else {}
        if bad:  # written by a run that diverged before it was checked
            corrupt.append((path, CorruptCheckpointError(
                f"{str(path)!r} holds non-finite weights ({', '.join(f'{n} tensors of {net}' for net, n in bad.items())})")))
            continue
        return path, contents, corrupt
    return None, None, corrupt
