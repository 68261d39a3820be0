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

import inspect
import os
import pathlib
import pickle
import re
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
]

PathLike = Union[str, os.PathLike]


class UntrustedCheckpointError(ValueError):
    """The checkpoint holds objects outside the allowlist; loading them runs their code."""


class CorruptCheckpointError(ValueError):
    """The checkpoint cannot be read (truncated, corrupt, or not a torch file)."""


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


def load_checkpoint(path: PathLike, *, trust: bool = False, map_location: Any = "cpu") -> dict:
    """Read a checkpoint without running code from it.

    Tensors land on ``map_location`` (the CPU by default; ``load_state_dict`` copies
    them to a net's device). Raises ``FileNotFoundError``,
    :class:`CorruptCheckpointError`, or :class:`UntrustedCheckpointError` naming the
    class that is not allowed and the opt-in (``trust=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=renaming_pickle_module())
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(err))
        if found is None or "weights_only" not in str(err):
            raise _corrupt(path, err) from err
        raise UntrustedCheckpointError(
            f"{str(path)!r} holds {found.group(1)}, which is not among the classes a checkpoint of "
            f"torchgan_sagan holds; loading it would run its code. If you trust the file, load it with "
            f"trust_checkpoint=True (--trust-checkpoint on the command line)") from None
    except Exception as err:  # torch reports a damaged file in many ways (RuntimeError, KeyError, ...)
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: BaseException) -> CorruptCheckpointError:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return CorruptCheckpointError(f"{str(path)!r} is truncated or corrupt (or not a checkpoint) and cannot be "
                                  f"read ({first_line})")


def find_checkpoints(folder: PathLike) -> List[Path]:
    """The ``*.model`` files of a run's checkpoint folder, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.model"), key=lambda p: p.stat().st_mtime, reverse=True)


def latest_intact_checkpoint(folder: PathLike, *, trust: bool = False
                             ) -> Tuple[Optional[Path], Optional[dict], List[Tuple[Path, CorruptCheckpointError]]]:
    """The newest checkpoint in ``folder`` that reads and whose nets' weights are finite,
    its contents (read once, here), and the newer ones that did not qualify (each with
    its error). ``(None, None, [...])``
    when none reads. An untrusted file is not skipped: its error propagates."""
    corrupt = []
    for path in find_checkpoints(folder):
        try:
            contents = load_checkpoint(path, trust=trust)
        except CorruptCheckpointError as err:
            corrupt.append((path, err))
            continue
        bad = non_finite_entries(contents) if isinstance(contents, dict) else {}
        if bad:  # written by a run that diverged before it was checked
            corrupt.append((path, CorruptCheckpointError(
                f"{str(path)!r} holds non-finite weights ({', '.join(f'{n} tensors of {net}' for net, n in bad.items())})")))
            continue
        return path, contents, corrupt
    return None, None, corrupt
