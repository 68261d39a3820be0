import errno
import io
import os
import pickle

import pytest
import torch

from torchgan_sagan.files import (
    atomic_save,
    atomic_write,
    checkpoint_classes,
    register_checkpoint_class,
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
