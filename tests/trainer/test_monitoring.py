import re

import pytest
import torch

from torchgan_sagan import get_config, make_trainer
from torchgan_sagan.trainer.monitoring import AttentionLogger, RunProgress, torchgan_output


@pytest.fixture
def trainer(tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, epochs=2, sample_size=4)
    return make_trainer(cfg, out=tmp_path, device="cpu")


def _loader(batches=3, batch_size=4):
    data = torch.utils.data.TensorDataset(torch.rand(batches * batch_size, 1, 32, 32) * 2 - 1,
                                          torch.zeros(batches * batch_size, dtype=torch.long))
    return torch.utils.data.DataLoader(data, batch_size=batch_size)


def test_one_bar_over_the_whole_run_with_losses(trainer, tmp_path, capsys):
    progress = RunProgress(_loader(), trainer)
    with torchgan_output(tmp_path / "train.log"):
        trainer(progress)
    progress.close()
    assert progress.bar.total == 6 and progress.bar.n == 6  # 2 epochs of 3 batches, one bar
    assert re.fullmatch(r"epoch 2/2, G -?\d+\.\d{3}, D \d+\.\d{3}", progress.postfix())
    captured = capsys.readouterr()
    assert "Epoch 1 Summary" not in captured.out  # torchgan's summaries went to the log
    assert "Epoch 2 Summary" in (tmp_path / "train.log").read_text()


def test_verbose_keeps_torchgans_console_output(trainer, capsys):
    with torchgan_output(None, verbose=True):
        trainer(RunProgress(_loader(batches=1), trainer, show=False))
    assert "Epoch 1 Summary" in capsys.readouterr().out


def test_attention_maps_and_gammas_reach_tensorboard(trainer, tmp_path):
    logger = AttentionLogger.attach(trainer, torch.randn(2, trainer.generator.encoding_dims))
    assert set(logger.gammas()) == {"generator/model.9", "discriminator/model.2"}  # at 16x16 in each
    with torchgan_output(None):
        trainer(_loader(batches=1))
    trainer.logger.close()
    events = b"".join(p.read_bytes() for p in (tmp_path / "logs").glob("events.out.tfevents.*"))
    assert b"attention_gamma/generator/model.9" in events and b"attention_maps" in events
    assert logger.step == 3  # called after each of the 2 epochs


def test_torchgans_log_is_on_disk_line_by_line(tmp_path):
    """A run killed between epochs keeps the log of every epoch before."""
    log = tmp_path / "train.log"
    with torchgan_output(log):
        print("Epoch 1 Summary")
        assert log.read_text() == "Epoch 1 Summary\n"  # before the file is closed


def test_without_a_terminal_progress_is_a_line_per_epoch(tmp_path, monkeypatch, capsys):
    import sys

    from torchgan_sagan.data import DeviceBatches

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    trainer = make_trainer(get_config("sagan_32", image_channels=1, step_channels=8, epochs=2), out=tmp_path,
                           device="cpu")
    progress = RunProgress(DeviceBatches(torch.rand(8, 1, 32, 32) * 2 - 1, 4), trainer, show="auto")
    trainer(progress)
    progress.close()
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2 done", "epoch 2/2 done"]
    assert "\r" not in printed.err + printed.out
