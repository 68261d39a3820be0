import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchgan_sagan.files import atomic_save
from torchgan_sagan.trainer.checkpoints import (
    CorruptCheckpointError,
    UntrustedCheckpointError,
    find_checkpoints,
    latest_intact_checkpoint,
    load_checkpoint,
)


class _WritesAFile:
    """Unpickling this calls open(path, "w"): a checkpoint that runs code when loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "written_by_the_checkpoint.txt"
    torch.save({"epoch": 1, "payload": _WritesAFile(target)}, tmp_path / "evil.model")
    with pytest.raises(UntrustedCheckpointError, match=r"holds \S*open.*trust_checkpoint=True"):
        load_checkpoint(tmp_path / "evil.model")
    assert not target.exists()
    load_checkpoint(tmp_path / "evil.model", trust=True)  # the explicit opt-in runs it
    assert target.exists()


def test_a_torchgan_checkpoint_of_every_loss_loads_without_trust(tmp_path, digit_classifier):
    from torchgan_sagan import LOSSES, get_config, make_trainer, train_step
    from torchgan_sagan.metrics import FID, KID, ClassCoverage

    images = torch.rand(8, 1, 32, 32) * 2 - 1
    for loss in LOSSES:
        cfg = get_config("sagan_32", image_channels=1, step_channels=8, loss=loss, ema_decay=0.9)
        metrics = [FID(images, digit_classifier, num_samples=4), KID(images, digit_classifier, num_samples=4),
                   ClassCoverage(torch.zeros(8, dtype=torch.long), digit_classifier, num_samples=4)]
        trainer = make_trainer(cfg, out=tmp_path / loss, device="cpu", metrics=metrics)
        train_step(trainer, images[:4])
        trainer.save_model(0)
        checkpoint = load_checkpoint(tmp_path / loss / "checkpoints" / "gan0.model")
        assert set(checkpoint["metric_objects"]) == {"FD-4_digit_classifier", "KID-4_digit_classifier",
                                                     "class_KL-4_digit_classifier"}
        assert checkpoint["sagan_config"]["fields"]["loss"] == loss


@pytest.mark.parametrize("content", [b"", b"hello", None], ids=["empty", "garbage", "truncated"])
def test_damaged_checkpoints_are_reported_plainly(tmp_path, content):
    path = tmp_path / "ck.model"
    atomic_save({"a": torch.arange(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_latest_intact_checkpoint_skips_damaged_newer_ones(tmp_path):
    for i in range(3):
        atomic_save({"i": i}, tmp_path / f"gan{i}.model")
        os.utime(tmp_path / f"gan{i}.model", (1000 + i, 1000 + i))
    (tmp_path / "gan2.model").write_bytes(b"truncated")
    found, contents, damaged = latest_intact_checkpoint(tmp_path)
    assert found == tmp_path / "gan1.model" and contents == {"i": 1}
    assert [p.name for p, _ in damaged] == ["gan2.model"]
    assert find_checkpoints(tmp_path)[0].name == "gan2.model"


#: A run folder written before the package was split into subpackages: its checkpoint
#: pickles the digit classifier as torchgan_sagan.classifier.DigitClassifier and the
#: metrics as torchgan_sagan.metrics.FID / ClassCoverage (tests/fixtures/README.md).
OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "run_before_subpackages"

_LOAD_OLD_RUN = """
import sys
import torch
from torchgan_sagan.trainer.checkpoints import load_checkpoint
from torchgan_sagan.trainer.run_folder import load_generator

folder = sys.argv[1]
checkpoint = load_checkpoint(folder + "/checkpoints/gan0.model")
print(sorted(type(m).__name__ for m in checkpoint["metric_objects"].values()))
print(sorted(type(m).__name__ for m in checkpoint["loss_objects"].values()))
g = load_generator(folder)
print(tuple(g(torch.randn(2, g.encoding_dims), torch.tensor([0, 1])).shape))
"""


@pytest.mark.slow
def test_a_checkpoint_from_before_the_subpackages_loads_in_a_fresh_process(tmp_path):
    """Without trust and without importing the metrics first: loading alone must make
    every class the checkpoint names resolvable, by its old module path too."""
    result = subprocess.run([sys.executable, "-c", _LOAD_OLD_RUN, str(OLD_RUN)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["['ClassCoverage', 'FID']",
                                             "['HingeDiscriminatorLoss', 'HingeGeneratorLoss']",
                                             "(2, 1, 32, 32)"]


def test_a_checkpoint_from_before_the_subpackages_resumes_training(tmp_path):
    from torchgan_sagan import make_trainer, train_step
    from torchgan_sagan.trainer.run_folder import read_config

    cfg = read_config(OLD_RUN / "config.json")
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    trainer.load_model(str(OLD_RUN / "checkpoints" / "gan0.model"))
    assert trainer.loss_information["generator_iters"] == 2
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert trainer.loss_information["generator_iters"] == 3


def _checkpoint(folder, name, iteration, mtime):
    path = folder / name
    atomic_save({"epoch": iteration // 4, "generator": {"w": torch.ones(2)},
                 "train_state": {"epoch": iteration // 4, "batch": 0, "iteration": iteration}}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_the_newest_checkpoint_is_the_furthest_trained_not_the_latest_modified(tmp_path):
    """A run copied without its times (cp -r, rsync -r) gives its files arbitrary ones."""
    _checkpoint(tmp_path, "gan0.model", 12, mtime=3000)  # the rotation's oldest, touched last by the copy
    newest = _checkpoint(tmp_path, "gan1.model", 16, mtime=1000)
    _checkpoint(tmp_path, "gan2.model", 8, mtime=2000)
    found, contents, skipped = latest_intact_checkpoint(tmp_path)
    assert found == newest and contents["train_state"]["iteration"] == 16 and skipped == []


def test_a_checkpoint_that_cannot_be_read_is_not_called_damaged(tmp_path, monkeypatch):
    """Permission, I/O and stale-handle errors say nothing of the file: the resume must
    stop there, not step back to an older checkpoint (which the rotation would then
    overwrite the newer one with)."""
    import errno

    from torchgan_sagan.trainer import checkpoints

    _checkpoint(tmp_path, "gan0.model", 4, mtime=1000)
    newest = _checkpoint(tmp_path, "gan1.model", 8, mtime=2000)
    load = torch.load

    def refusing(path, *args, **kwargs):
        if str(path) == str(newest):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", refusing)
    with pytest.raises(checkpoints.UnreadableCheckpointError, match="Permission denied.*not known to be damaged"):
        latest_intact_checkpoint(tmp_path)
    with pytest.raises(checkpoints.UnreadableCheckpointError):  # an OSError, not a CorruptCheckpointError
        load_checkpoint(newest)
