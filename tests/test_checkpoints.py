import os

import pytest
import torch

from torchgan_sagan.checkpoints import (
    CorruptCheckpointError,
    UntrustedCheckpointError,
    atomic_save,
    find_checkpoints,
    latest_intact_checkpoint,
    load_checkpoint,
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
        assert set(checkpoint["metric_objects"]) == {"FID", "KID", "ClassCoverage"}
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
