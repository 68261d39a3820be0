"""examples/celeba.py, whose rank ``KILL_RANK`` kills itself with SIGKILL right after the
launch's ``KILL_AFTER_SAVES``-th checkpoint, in torchrun's first attempt only (a
restarted attempt runs to the end). Arguments are celeba.py's."""

import os
import runpy
import signal
import sys
from pathlib import Path

from torchgan_sagan.trainer.resumable import ResumableTraining

ROOT = Path(__file__).resolve().parents[2]
write = ResumableTraining._save
saves = [0]


def write_then_die(self, *args, **kwargs):
    write(self, *args, **kwargs)
    saves[0] += 1
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and saves[0] == int(os.environ["KILL_AFTER_SAVES"]) and \
            os.environ.get("RANK", "0") == os.environ["KILL_RANK"]:
        os.kill(os.getpid(), signal.SIGKILL)


ResumableTraining._save = write_then_die
sys.argv = [str(ROOT / "examples" / "celeba.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
