"""Stopping when the cluster asks: a checkpoint, then a status a batch system can act on.

SLURM sends SIGTERM at a time limit, on ``scancel`` and on pre-emption (and SIGUSR1
ahead of time with ``#SBATCH --signal=B:USR1@120``); torchelastic sends SIGTERM to its
workers before it restarts them; a person presses Ctrl-C (SIGINT). While a trainer of
this package trains (:class:`~torchgan_sagan.trainer.resumable.ResumableTraining`), each
of these only sets a flag (:func:`stop_signals`): the loop finishes the iteration it is
in, writes a checkpoint (every rank at the same iteration under DDP: they agree at the
next log point), and raises :class:`StopRequested`. ``examples/celeba.py`` then exits
with :data:`EXIT_PREEMPTED` (75, "try again": requeue and ``--resume auto``), or 130
after Ctrl-C. A second Ctrl-C stops at once, without a checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator, List, Optional

__all__ = ["StopRequested", "stop_signals", "STOP_SIGNALS", "EXIT_PREEMPTED", "EXIT_INTERRUPTED"]

#: The exit status after a checkpoint written on SIGTERM or SIGUSR1 (sysexits' EX_TEMPFAIL).
EXIT_PREEMPTED = 75
#: The exit status after a checkpoint written on Ctrl-C (SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

#: The signals that stop training with a checkpoint (SIGUSR1 where the platform has it).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name))


class StopRequested(Exception):
    """Training stopped on a signal, after writing ``checkpoint`` at ``iteration``."""

    def __init__(self, signum: int, iteration: int, checkpoint: Optional[Path]) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name} at iteration {iteration}; checkpoint: {checkpoint}")

    @property
    def exit_status(self) -> int:
        return EXIT_INTERRUPTED if self.signum == signal.SIGINT else EXIT_PREEMPTED


@contextlib.contextmanager
def stop_signals(received: List[int]) -> Iterator[None]:
    """While inside, each of :data:`STOP_SIGNALS` appends its number to ``received``
    instead of ending the process (a handler only sets a flag: the loop acts at its
    next iteration); a second SIGINT raises ``KeyboardInterrupt``. The previous
    handlers come back on exit. Outside the main thread (where Python cannot set
    handlers) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
