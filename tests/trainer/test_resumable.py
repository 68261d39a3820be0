"""The loop of long runs: divergence caught where values are read back, mid-epoch
checkpoints, an exact resume, curves that continue, learning rates that are applied."""

import json

import pytest
import torch

from torchgan_sagan import DivergenceError, get_config, make_trainer
from torchgan_sagan.data import DeviceBatches
from torchgan_sagan.models.discriminator import SAGANDiscriminator
from torchgan_sagan.trainer.checkpoints import find_checkpoints, latest_intact_checkpoint, load_checkpoint
from torchgan_sagan.trainer.divergence import MARK_FILE, non_finite_entries

IMAGES = (torch.rand(48, 1, 16, 16) * 255).to(torch.uint8)  # 6 batches of 8


def _trainer(out, **overrides):
    settings = dict(image_size=16, image_channels=1, step_channels=8, batch_size=8, epochs=2, sample_size=4,
                    g_attn_resolutions=(8,), d_attn_resolutions=(8,))
    settings.update(overrides)
    log_every = settings.pop("log_every", 4)
    return make_trainer(get_config("sagan_32", **settings), out=out, device="cpu", log_every=log_every)


def _batches():
    return DeviceBatches(IMAGES, 8, seed=3)


def _poison_discriminator(monkeypatch, at_call):
    """D's output becomes NaN at its ``at_call``-th training forward."""
    calls = [0]
    forward = SAGANDiscriminator.forward

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            calls[0] += 1
            if calls[0] == at_call:
                out = out * float("nan")
        return out

    monkeypatch.setattr(SAGANDiscriminator, "forward", poisoned)


def _weights(trainer):
    return {f"{net}.{k}": v.clone() for net in ("generator", "discriminator")
            for k, v in getattr(trainer, net).state_dict().items()}


def test_a_run_killed_after_a_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    alone = _trainer(tmp_path / "alone", checkpoint_every="4")
    alone(_batches())
    torch.manual_seed(0)
    first = _trainer(tmp_path / "cut", checkpoint_every="4", epochs=1)
    first(_batches())  # iterations 1-6: checkpoints after 4 (mid-epoch) and 6 (epoch end)
    mid = tmp_path / "cut" / "checkpoints" / "gan0.model"
    assert (load_checkpoint(mid)["train_state"]["epoch"], load_checkpoint(mid)["train_state"]["batch"]) == (0, 4)
    (tmp_path / "cut" / "checkpoints" / "gan1.model").unlink()  # as if killed before the epoch's end
    torch.manual_seed(123)  # whatever the process seeds, the checkpoint's generators win
    resumed = _trainer(tmp_path / "cut", checkpoint_every="4")
    resumed.load_model(str(mid))
    assert (resumed.start_epoch, resumed.start_batch, resumed.iteration) == (0, 4, 4)
    resumed(_batches())
    assert resumed.iteration == alone.iteration == 12
    a, b = _weights(alone), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_without_the_generator_states_the_same_resume_differs(tmp_path):
    """The check above can fail: the noise of the continuation comes from the checkpoint."""
    torch.manual_seed(0)
    alone = _trainer(tmp_path / "alone", checkpoint_every="4")
    alone(_batches())
    torch.manual_seed(0)
    _trainer(tmp_path / "cut", checkpoint_every="4", epochs=1)(_batches())
    resumed = _trainer(tmp_path / "cut", checkpoint_every="4")
    resumed.load_model(str(tmp_path / "cut" / "checkpoints" / "gan0.model"))
    resumed._pending_rng = None
    torch.manual_seed(123)
    resumed(_batches())
    a, b = _weights(alone), _weights(resumed)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_stops_the_run_and_no_checkpoint_holds_it(tmp_path, monkeypatch):
    _poison_discriminator(monkeypatch, at_call=3 * 8)  # D runs 3 times an iteration: iteration 8
    trainer = _trainer(tmp_path / "run", epochs=3)
    with pytest.raises(DivergenceError) as caught:
        trainer(_batches())
    message = str(caught.value)
    assert "iteration 8 (epoch 2)" in message  # found at the log point (every 4) after the NaN
    assert "nan" in message and str(tmp_path / "run" / "checkpoints" / "gan0.model") in message
    files = find_checkpoints(tmp_path / "run" / "checkpoints")
    assert [f.name for f in files] == ["gan0.model"]  # epoch 1 only; epoch 2 was never saved
    assert not non_finite_entries(load_checkpoint(files[0]))
    mark = json.loads((tmp_path / "run" / MARK_FILE).read_text())
    assert mark["iteration"] == 8 and mark["checkpoint"].endswith("gan0.model") and mark["g_lr"] == 4e-4


def test_a_nan_with_rollback_goes_back_halves_the_rates_and_finishes(tmp_path, monkeypatch, capsys):
    _poison_discriminator(monkeypatch, at_call=3 * 8)
    trainer = _trainer(tmp_path / "run", epochs=3, on_divergence="rollback", g_lr=1e-4, d_lr=4e-4)
    trainer(_batches())
    assert "Rollback 1 of 3" in capsys.readouterr().err
    assert trainer.optimizer_generator.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert trainer.optimizer_discriminator.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert trainer.iteration == 6 + 12  # epoch 1, then epochs 2 and 3 again from its checkpoint
    newest, contents, skipped = latest_intact_checkpoint(tmp_path / "run" / "checkpoints")
    assert not skipped and contents["epoch"] == 3 and contents["train_state"]["rollbacks"] == 1
    assert contents["sagan_config"]["fields"]["g_lr"] == pytest.approx(5e-5)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["fields"]["d_lr"] == pytest.approx(2e-4)
    assert config["history"][-1]["changes"]["d_lr"] == [4e-4, 2e-4]
    assert not (tmp_path / "run" / MARK_FILE).exists()


def test_rollbacks_are_limited(tmp_path, monkeypatch):
    forward = SAGANDiscriminator.forward
    monkeypatch.setattr(SAGANDiscriminator, "forward", lambda self, *a, **k: forward(self, *a, **k) * (
        float("nan") if self.training and getattr(self, "poisoned", False) else 1.0))
    trainer = _trainer(tmp_path / "run", epochs=3, on_divergence="rollback", max_rollbacks=2)
    trainer(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(IMAGES.float() / 127.5 - 1), batch_size=8))
    trainer.epochs = 5
    trainer.discriminator.poisoned = True
    with pytest.raises(DivergenceError, match=r"after 2 rollback\(s\) \(max_rollbacks 2\)"):
        trainer(_batches())


def test_checkpoints_by_iterations_rotate_through_the_newest_k(tmp_path):
    trainer = _trainer(tmp_path / "run", checkpoint_every="2", retain_checkpoints=3)
    trainer(_batches())  # saves after iterations 2, 4, 6 (epoch end), 8, 10, 12 (epoch end)
    states = sorted((load_checkpoint(p)["train_state"]["iteration"], p.name)
                    for p in find_checkpoints(tmp_path / "run" / "checkpoints"))
    assert [s[0] for s in states] == [8, 10, 12]
    newest, contents, _ = latest_intact_checkpoint(tmp_path / "run" / "checkpoints")
    assert contents["train_state"]["iteration"] == 12 and contents["train_state"]["batch"] == 0


def test_checkpoints_by_the_clock_are_agreed_at_log_points(tmp_path, monkeypatch):
    import torchgan_sagan.trainer.resumable as resumable

    now = [0.0]
    monkeypatch.setattr(resumable.time, "monotonic", lambda: now[0])
    trainer = _trainer(tmp_path / "run", checkpoint_every="1m", epochs=1, log_every=2)
    real_iter = trainer.train_iter

    def iteration():
        now[0] += 25.0  # every iteration takes 25 s
        return real_iter()

    trainer.train_iter = iteration
    trainer(_batches())  # log points at 2, 4, 6: 50 s, 100 s (due), 150 s (the epoch's end)
    saved = sorted(load_checkpoint(p)["train_state"]["batch"] for p in find_checkpoints(tmp_path / "run" / "checkpoints"))
    assert saved == [0, 4]


def test_curves_continue_at_their_step_after_a_resume(tmp_path):
    trainer = _trainer(tmp_path / "run", checkpoint_every="4", epochs=1)
    trainer(_batches())
    steps = {type(v).__name__: v.step for v in [*trainer.logger.logger_mid_epoch, *trainer.logger.logger_end_epoch]}
    resumed = _trainer(tmp_path / "run", epochs=2)
    resumed.load_model(str(tmp_path / "run" / "checkpoints" / "gan1.model"))
    after = {type(v).__name__: v.step for v in [*resumed.logger.logger_mid_epoch, *resumed.logger.logger_end_epoch]}
    assert after == steps and steps["LossVisualize"] > 1 and steps["ImageVisualize"] == 2
    assert resumed.logger.iteration == 6


def test_learning_rates_of_the_config_are_applied_to_loaded_optimizers(tmp_path):
    _trainer(tmp_path / "run", epochs=1)(_batches())
    resumed = _trainer(tmp_path / "run", epochs=2, g_lr=1e-5)
    resumed.load_model(str(tmp_path / "run" / "checkpoints" / "gan0.model"))
    assert resumed.optimizer_generator.param_groups[0]["lr"] == 1e-5
    assert resumed.optimizer_discriminator.param_groups[0]["lr"] == 4e-4
    assert "exp_avg" in next(iter(resumed.optimizer_generator.state.values()))  # the loaded state stays


def test_an_old_checkpoint_with_non_finite_weights_is_not_resumed(tmp_path):
    _trainer(tmp_path / "run", epochs=2)(_batches())
    newest = tmp_path / "run" / "checkpoints" / "gan1.model"
    contents = load_checkpoint(newest)
    contents["generator"] = {k: v * float("nan") if v.is_floating_point() else v
                             for k, v in contents["generator"].items()}
    torch.save(contents, newest)
    found, _, skipped = latest_intact_checkpoint(tmp_path / "run" / "checkpoints")
    assert found.name == "gan0.model" and "non-finite weights" in str(skipped[0][1])
