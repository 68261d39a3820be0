import os

import pytest
import torch

from torchgan_sagan.checkpoints import atomic_save


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
