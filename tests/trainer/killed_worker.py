"""examples/celeba.py, whose rank ``KILL_RANK`` sends itself ``SIGNAL`` (default: SIGKILL)
right after the launch's ``KILL_AFTER_SAVES``-th checkpoint or, with
``SIGNAL_AT_ITERATION``, right after that many iterations, in torchrun's first attempt
only (a restarted attempt runs to the end). Arguments are celeba.py's."""

import os
import runpy
import signal
import sys
from pathlib import Path

from torchgan_sagan.trainer import resumable
from torchgan_sagan.trainer.resumable import ResumableTraining

ROOT = Path(__file__).resolve().parents[2]
write, iterate = ResumableTraining._save, resumable.run_iteration
counts = {"saves": 0, "iterations": 0}


def _signal_if(count: str, limit_variable: str) -> None:
    counts[count] += 1
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and counts[count] == int(os.environ.get(limit_variable, -1)) and \
            os.environ.get("RANK", "0") == os.environ["KILL_RANK"]:
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("SIGNAL", "KILL")))


def write_then_signal(self, *args, **kwargs):
    write(self, *args, **kwargs)
    _signal_if("saves", "KILL_AFTER_SAVES")


def iterate_then_signal(trainer):
    result = iterate(trainer)
    _signal_if("iterations", "SIGNAL_AT_ITERATION")
    return result


ResumableTraining._save = write_then_signal
resumable.run_iteration = iterate_then_signal
sys.argv = [str(ROOT / "examples" / "celeba.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
