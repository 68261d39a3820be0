"""One job per run folder: ``FOLDER/RUNNING.lock`` (a lock of :mod:`torchgan_sagan.locks`:
it names its holder and shows it is alive).

Two jobs training into one folder would share one checkpoint rotation and delete each
other's partial files; a job array launched in one second would pick one numbered
folder twice. :func:`acquire_run_lock` locks a folder for a job, and raises
:class:`RunFolderLocked` naming the holder when another live job has it (a lock whose
holder is gone is taken over with a line). :func:`claim_new_folder` creates a new run
folder as it picks it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, Optional

from ..locks import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, Lock, Locked, acquire_lock, read_lock

__all__ = ["acquire_run_lock", "read_run_lock", "claim_new_folder", "RunFolderLocked", "LOCK_FILE"]

LOCK_FILE = "RUNNING.lock"


class RunFolderLocked(Locked):
    """Another live job holds the run folder's lock."""


def read_run_lock(folder: os.PathLike) -> Optional[dict]:
    """The holder of ``folder``'s lock (see :func:`torchgan_sagan.locks.read_lock`)."""
    return read_lock(Path(folder) / LOCK_FILE)


def acquire_run_lock(folder: os.PathLike, *, say: Callable[[str], None] = print,
                     heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_AFTER_SECONDS) -> Lock:
    """Lock ``folder`` for this job; raise :class:`RunFolderLocked` naming the holder
    when another live job has it."""
    try:
        return acquire_lock(Path(folder) / LOCK_FILE, what=str(folder), say=say, heartbeat=heartbeat,
                            stale_after=stale_after,
                            busy=": another job trains there. Wait for it to end, or train into another --out")
    except Locked as err:
        raise RunFolderLocked(str(err)) from None


def claim_new_folder(candidates) -> Path:
    """The first of ``candidates`` (paths) that this call creates: ``mkdir`` is atomic, so
    two jobs started in the same second never get the same folder."""
    for folder in candidates:
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as err:
            if err.errno != errno.EEXIST:
                raise
    raise RuntimeError("no candidate folder left")  # an infinite sequence never gets here
