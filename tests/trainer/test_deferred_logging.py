"""Losses and gradient sums stay on the device between log points, and are read back
all at once: the values logged and checkpointed are plain floats equal to torchgan's."""

import math
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torchgan_sagan import get_config, make_trainer, train_step
from torchgan_sagan.trainer.deferred_logging import DeferredLogger

# Operators that read a value back to the host (or need one to size their output).
HOST_READS = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select", "unique_dim",
              "_unique2", "repeat_interleave", "item"}


class HostReads(TorchDispatchMode):
    """Records every host-reading operator run under it, with the Python frame that
    asked for it. Adam's step counter is a host tensor unless ``capturable`` (reading it
    is no GPU sync), so reads from ``torch/optim`` are left out."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READS:
            import traceback

            stack = traceback.extract_stack()[:-1]
            if not any(f"torch{os.sep}optim{os.sep}" in frame.filename for frame in stack):
                ours = [f for f in stack if "torchgan" in f.filename]
                self.reads.append((name, f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "?"))
        return func(*args, **(kwargs or {}))


def _trainer(tmp_path, **overrides):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, **overrides)
    return make_trainer(cfg, out=tmp_path, device="cpu", log_every=3)


@pytest.mark.parametrize("overrides", [{}, {"loss": "hinge"}, {"loss": "wasserstein"},
                                       {"ema_decay": 0.9, "ema_start": 0, "diffaugment": "color,translation"}],
                         ids=["default", "hinge", "wasserstein", "ema-diffaugment"])
def test_a_training_step_reads_nothing_back_between_log_points(tmp_path, overrides, monkeypatch):
    trainer = _trainer(tmp_path, **overrides)
    lists = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: lists.append(self.shape) or tolist(self))
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    train_step(trainer, images)  # the first step creates the optimizers' state
    with HostReads() as seen:
        train_step(trainer, images)  # the logger's second iteration: nothing written
    assert seen.reads == [] and lists == []
    with HostReads() as seen:
        train_step(trainer, images)  # the third: everything read back at once
    # One read (on the CPU, tolist reads without an operator the detector could see):
    # 2 loss totals, 2 x 3 losses, 2 nets' gradient sums of 3 iterations and the open entries.
    assert seen.reads == [] and len(lists) == 1 and lists[0].numel() >= 10


def test_the_detector_sees_a_host_read():
    with HostReads() as seen:
        torch.ones(2).sum().item()
    assert [name for name, _ in seen.reads] == ["_local_scalar_dense"]


def test_read_back_gives_torchgans_floats(tmp_path):
    trainer = _trainer(tmp_path, ncritic=2)
    assert isinstance(trainer.logger, DeferredLogger) and trainer.logger.get_grad_viz().deferred
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    losses = [train_step(trainer, images) for _ in range(4)]
    trainer.logger.read_back(trainer)
    info = trainer.loss_information
    assert all(isinstance(info[k], float) for k in ("generator_losses", "discriminator_losses"))
    assert math.isclose(info["discriminator_losses"], sum(float(d) for _, d in losses), rel_tol=1e-6)
    assert math.isclose(info["generator_losses"], sum(float(g) for g, _ in losses), rel_tol=1e-6)
    loss_logs = trainer.logger.get_loss_viz().logs
    assert len(loss_logs["LeastSquaresDiscriminatorLoss"]) == 4 and len(loss_logs["LeastSquaresGeneratorLoss"]) == 2
    assert all(isinstance(v, float) for values in loss_logs.values() for v in values)
    grads = trainer.logger.get_grad_viz().logs
    # One entry per iteration plus the open one, all floats, and positive where a net was trained.
    assert all(isinstance(v, float) for values in grads.values() for v in values)
    assert all(v > 0 for v in grads["discriminator"][:-1])


def test_checkpoints_hold_floats(tmp_path):
    trainer = _trainer(tmp_path)
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    trainer.save_model(0)
    saved = torch.load(tmp_path / "checkpoints" / "gan0.model", weights_only=False)
    assert isinstance(saved["loss_information"]["generator_losses"], float)
    assert all(isinstance(v, float) for values in saved["loss_logs"].values() for v in values)


def test_tensorboard_gets_every_log_every_th_step(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    written = []
    loss_viz = trainer.logger.get_loss_viz()
    monkeypatch.setattr(type(loss_viz), "log_tensorboard", lambda self, running: written.append((self.step, running)))
    monkeypatch.setattr("torchgan.logging.visualize.TENSORBOARD_LOGGING", 1)
    for _ in range(7):
        train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert [step for step, _ in written] == [3, 6]  # torchgan's step numbers: iterations
    assert all(isinstance(v, float) for _, running in written for v in running.values())


def test_log_every_is_checked(tmp_path):
    with pytest.raises(ValueError, match="log_every"):
        make_trainer(get_config("sagan_32", step_channels=8), out=tmp_path, device="cpu", log_every=0)


def test_pictures_thin_out_over_long_runs():
    from torchgan_sagan.trainer.deferred_logging import pictures_due

    due = [epoch for epoch in range(1, 20001) if pictures_due(epoch)]
    assert due[:100] == list(range(1, 101)) and due[100:103] == [110, 120, 130]
    assert due == [*range(1, 101), *range(110, 1000, 10), *range(1000, 10000, 100), *range(10000, 20001, 1000)]
    assert len([e for e in range(1, 10 ** 6 + 1) if pictures_due(e)]) < 550


def test_an_epoch_off_the_schedule_draws_no_sample_grid_and_keeps_its_step(tmp_path):
    from torchgan_sagan import get_config, make_trainer, train_step

    trainer = make_trainer(get_config("sagan_32", image_channels=1, step_channels=8, sample_size=4), out=tmp_path,
                           device="cpu")
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    images = next(v for v in trainer.logger.logger_end_epoch if type(v).__name__ == "ImageVisualize")
    images.step = 101
    trainer.logger.run_end_epoch(trainer, 100, 0.0)  # epoch 101: off the schedule
    assert images.step == 102 and not list((tmp_path / "samples").glob("*.png"))
    images.step = 110
    trainer.logger.run_end_epoch(trainer, 109, 0.0)  # epoch 110: on it
    assert [p.name for p in (tmp_path / "samples").glob("*.png")] == ["epoch110_generator.png"]
    logs = trainer.logger.get_loss_viz().logs
    assert all(len(values) == 1 for values in logs.values())  # restarted at the epoch's end
