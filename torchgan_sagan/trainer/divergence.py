"""A run whose losses or weights turn non-finite: found, reported, and remembered.

GANs diverge: one bad batch or a learning rate too high for the loss, and a loss
becomes ``inf`` or ``nan``, then every weight it touches. The trainers of this
package (:mod:`torchgan_sagan.trainer.resumable`) look for it where they read values
back anyway (every ``log_every`` iterations, at epoch ends, before every checkpoint),
so that no checkpoint with non-finite weights is ever written. What follows is the
config's ``on_divergence``: ``"stop"`` raises :class:`DivergenceError`; ``"rollback"``
reloads the newest good checkpoint at half the learning rates, up to ``max_rollbacks``
times.

A run that stops leaves a mark in its folder (:data:`MARK_FILE`, JSON), so that a
restart with the same command line (``torchrun --max-restarts`` restarts on any
non-zero exit) does not replay the same divergence: ``examples/celeba.py --resume``
refuses a marked folder until it is resumed with other learning rates or with
``--on-divergence rollback``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import torch

from ..files import atomic_write

__all__ = ["DivergenceError", "MARK_FILE", "non_finite_losses", "finite_weights", "non_finite_entries",
           "write_mark", "read_mark", "clear_mark"]

#: The mark a stopped diverging run leaves in its folder.
MARK_FILE = "DIVERGED.json"


class DivergenceError(RuntimeError):
    """Training diverged: a loss or weight is non-finite. The message names the
    iteration, the loss and the newest good checkpoint; :attr:`details` holds them."""

    def __init__(self, message: str, details: Optional[dict] = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


def non_finite_losses(loss_information: Dict[str, object]) -> Dict[str, float]:
    """The running loss totals of a torchgan trainer that are not finite (read back
    to floats before, see :mod:`torchgan_sagan.trainer.deferred_logging`)."""
    return {key: float(value) for key, value in loss_information.items()
            if key.endswith("_losses") and isinstance(value, (int, float)) and not math.isfinite(value)}


def finite_weights(nets: Iterable[torch.nn.Module]) -> torch.Tensor:
    """A device scalar: whether every floating-point parameter and buffer of ``nets`` is
    finite. Computed without a host read (one norm per tensor in a few launches); the
    caller reads it where it reads anyway."""
    flags = []
    for net in nets:
        tensors = [t.detach() for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
        if tensors:
            flags.append(torch.stack([n.float() for n in torch._foreach_norm(tensors)]).isfinite().all())
    return torch.stack(flags).all() if flags else torch.tensor(True)


def non_finite_entries(checkpoint: dict, names: Iterable[str] = ("generator", "discriminator")) -> Dict[str, int]:
    """For the nets' state dicts in a loaded checkpoint: how many tensors of each hold
    non-finite values (empty when all are finite)."""
    found = {}
    for name in names:
        state = checkpoint.get(name)
        if isinstance(state, dict):
            bad = sum(1 for t in state.values()
                      if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(t.isfinite().all()))
            if bad:
                found[name] = bad
    return found


def write_mark(folder: Union[str, os.PathLike], error: DivergenceError) -> Path:
    """Leave :data:`MARK_FILE` in a run's ``folder``: the error's message and details."""
    path = Path(folder) / MARK_FILE
    record = {"message": str(error), **error.details}
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2, default=str).encode()))
    return path


def read_mark(folder: Union[str, os.PathLike]) -> Optional[dict]:
    """The mark of a stopped diverging run in ``folder``, or ``None``. A mark that does
    not read still counts (with a message that says so)."""
    path = Path(folder) / MARK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"message": f"training diverged in an earlier launch ({path} is unreadable)"}


def clear_mark(folder: Union[str, os.PathLike]) -> None:
    """Remove the mark (a resume with changed learning rates or a rollback policy)."""
    try:
        (Path(folder) / MARK_FILE).unlink()
    except FileNotFoundError:
        pass
