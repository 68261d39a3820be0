"""Locks in files, for jobs on one machine or many sharing a file system.

:func:`acquire_lock` claims a lock file with ``os.open(O_CREAT | O_EXCL)``, which is
atomic on local disks and on NFSv3 and later, and writes the holder into it (host,
pid, start time). While the holder runs, a background thread touches the file every
:data:`HEARTBEAT_SECONDS` (its modification time is the heartbeat). A lock is taken
over, with a line that says so, when its holder is gone: the same host and no such
process, or no heartbeat for ``stale_after`` seconds (a holder on another host, or a
pid the system gave to another process). Otherwise :class:`Locked` names the holder,
or, with ``wait=True``, the caller waits for it. Locks go when their holder releases
them, whatever ends it, except SIGKILL, after which the next job takes the lock over.
Used for run folders (:mod:`torchgan_sagan.trainer.run_lock`) and image caches
(:mod:`torchgan_sagan.data.image_cache`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

__all__ = ["acquire_lock", "read_lock", "Lock", "Locked", "HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS"]

#: How often a holder touches its lock.
HEARTBEAT_SECONDS = 30.0
#: A lock untouched this long is taken over (the holder is gone or cannot be seen).
STALE_AFTER_SECONDS = 600.0


class Locked(RuntimeError):
    """Another live job holds the lock."""


def describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"


def read_lock(path: os.PathLike) -> Optional[dict]:
    """The holder of the lock file ``path`` (host, pid, start time, ``age``: seconds
    since its last heartbeat) and whether it is ``alive``; ``None`` when there is none."""
    path = Path(path)
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


class Lock:
    """A held lock: :meth:`release` it (or use it as a context manager)."""

    def __init__(self, path: Path, token: str, heartbeat: float) -> None:
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="lock-heartbeat")
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:  # gone or unreachable for now: the next beat tries again
                pass

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this holder's."""
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_lock(path: os.PathLike, *, what: str, busy: str = "", say: Callable[[str], None] = print,
                 wait: bool = False, poll: float = 1.0, heartbeat: float = HEARTBEAT_SECONDS,
                 stale_after: float = STALE_AFTER_SECONDS) -> Lock:
    """Claim the lock file ``path`` (of ``what``, as messages name it); see the module's
    docstring. A live holder raises :class:`Locked` (``busy`` is added to its message),
    or, with ``wait``, is waited for, with one line that says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    record = {"host": socket.gethostname(), "pid": os.getpid(), "token": token, "stale_after": stale_after,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = read_lock(path)
            if holder is None:
                continue  # released in between
            if holder["alive"]:
                if not wait:
                    raise Locked(f"{what} is in use by {describe(holder)}{busy} (its lock: {path})") from None
                if not waited:
                    say(f"Waiting for {describe(holder)}, which holds {what} (its lock: {path}).")
                    waited = True
                time.sleep(poll)
                continue
            say(f"Taking over the lock of {what}: {describe(holder)} is gone (last heartbeat "
                f"{holder['age']:.0f} s ago).")
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue  # the claim above decides between jobs taking it over together
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return Lock(path, token, heartbeat)
