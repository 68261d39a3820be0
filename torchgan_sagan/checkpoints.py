"""Checkpoint files that are never left half-written."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

__all__ = ["atomic_save"]


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder.

    The file is written and synced under a temporary name, then renamed over
    ``path`` in one step, so an interrupted save leaves the previous file intact
    and never a truncated one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
