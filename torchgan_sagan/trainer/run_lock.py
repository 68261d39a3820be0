"""One job per run folder: a lock file that names its holder and shows it is alive.

Two jobs training into one folder would share one checkpoint rotation and delete each
other's partial files; a job array launched in one second would pick one numbered
folder twice. :func:`acquire_run_lock` claims ``FOLDER/RUNNING.lock`` with
``os.open(O_CREAT | O_EXCL)``, which is atomic on local disks and on NFSv3 and later,
and writes the holder into it (host, pid, start time). While the job runs, a
background thread touches the file every :data:`HEARTBEAT_SECONDS` (its modification
time is the heartbeat). A lock is taken over, with a line that says so, when its holder
is gone: the same host and no such process, or no heartbeat for ``stale_after``
seconds (a holder on another host, a pid that the system gave to another process).
Otherwise :class:`RunFolderLocked` names the holder. Locks go away when the job ends,
whatever ends it, except SIGKILL, after which the next job takes the lock over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

__all__ = ["acquire_run_lock", "read_run_lock", "claim_new_folder", "RunLock", "RunFolderLocked", "LOCK_FILE",
           "HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS"]

LOCK_FILE = "RUNNING.lock"
#: How often a holder touches its lock.
HEARTBEAT_SECONDS = 30.0
#: A lock untouched this long is taken over (the holder is gone or cannot be seen).
STALE_AFTER_SECONDS = 600.0


class RunFolderLocked(RuntimeError):
    """Another live job holds the run folder's lock."""


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"


def read_run_lock(folder: os.PathLike) -> Optional[dict]:
    """The holder of ``folder``'s lock (host, pid, start time, ``age``: seconds since its
    last heartbeat) and whether it is ``alive``; ``None`` when there is no lock."""
    path = Path(folder) / LOCK_FILE
    try:
        holder = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # being written this instant, or garbage: judge by its age alone
        try:
            holder, age = {}, time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
    holder = holder if isinstance(holder, dict) else {}
    holder["age"] = age
    holder["alive"] = _alive(holder, age)
    return holder


def _alive(holder: dict, age: float) -> bool:
    stale_after = float(holder.get("stale_after", STALE_AFTER_SECONDS))
    if age > stale_after:
        return False
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
    return True


class RunLock:
    """A held lock: :meth:`release` it (or use it as a context manager)."""

    def __init__(self, path: Path, token: str, heartbeat: float) -> None:
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="run-lock")
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:  # gone or unreachable for now: the next beat tries again
                pass

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this job's."""
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_run_lock(folder: os.PathLike, *, say: Callable[[str], None] = print,
                     heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_AFTER_SECONDS) -> RunLock:
    """Lock ``folder`` for this job (see the module's docstring); raise
    :class:`RunFolderLocked` naming the holder when another live job has it."""
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    record = {"host": socket.gethostname(), "pid": os.getpid(), "token": token, "stale_after": stale_after,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):  # a takeover can race another job's: the claim below decides
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = read_run_lock(folder)
            if holder is None:
                continue  # released in between
            if holder["alive"]:
                raise RunFolderLocked(f"{folder} is in use by {_describe(holder)}: another job trains there "
                                      f"(its lock: {path}). Wait for it to end, or train into another --out")
            say(f"Taking over the lock of {folder}: {_describe(holder)} is gone (last heartbeat "
                f"{holder['age']:.0f} s ago).")
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return RunLock(path, token, heartbeat)
    raise RunFolderLocked(f"{folder}: could not claim its lock {path}; another job claims it at the same time")


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
