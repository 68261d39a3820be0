import errno
import io
import os
import pickle
import signal
import stat
import subprocess
import sys

import pytest
import torch

from torchgan_sagan.files import (
    atomic_save,
    atomic_write,
    checkpoint_classes,
    register_checkpoint_class,
    remove_partial_files,
    renaming_pickle_module,
)


def test_atomic_save_round_trip(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.arange(3)}, path)
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
    assert os.listdir(tmp_path) == ["ck.pt"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"version": 1}, path)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        atomic_save({"version": 2, "bad": _Unpicklable()}, path)
    assert torch.load(path)["version"] == 1
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_a_full_disk_halfway_through_keeps_the_previous_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write(path, lambda f: f.write(b"old"))

    def write_until_full(f):
        f.write(b"new, half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, write_until_full)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["config.json"]


class Moved:
    """Stands for a class that an earlier version defined elsewhere."""


def test_a_moved_class_is_found_under_its_old_path():
    register_checkpoint_class(Moved, "an_old_module.Moved")
    assert Moved in checkpoint_classes() and (Moved, "an_old_module.Moved") in checkpoint_classes()
    old_pickle = pickle.dumps(Moved(), protocol=0).replace(__name__.encode(), b"an_old_module")
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(old_pickle)
    assert type(renaming_pickle_module().Unpickler(io.BytesIO(old_pickle)).load()) is Moved


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
    assert synced == ["file", "folder"]


@pytest.mark.slow
def test_partial_files_of_a_killed_write_are_removed(tmp_path):
    """A process killed inside atomic_write leaves its temporary file: simulate it by
    killing a child process mid-write, then clean up as a new run does."""
    script = (
        "import os, sys, time\n"
        "from torchgan_sagan.files import atomic_write\n"
        "def write(f):\n"
        "    f.write(b'half')\n"
        "    f.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        f"atomic_write({str(tmp_path / 'gan0.model')!r}, write)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp-") and left[0].endswith(".part")
    (tmp_path / "keep.model").write_bytes(b"a checkpoint")
    assert remove_partial_files(tmp_path) == left
    assert [p.name for p in tmp_path.iterdir()] == ["keep.model"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_gives_new_files(tmp_path, umask, mode):
    """A checkpoint a teammate can read (mkstemp alone makes 0600 files)."""
    before = os.umask(umask)
    try:
        atomic_save({"x": 1}, tmp_path / "a.model")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "a.model").stat().st_mode) == mode
