"""The loop of long runs: divergence caught where values are read back, mid-epoch
checkpoints, an exact resume, curves that continue, learning rates that are applied."""

import json
import shutil

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


def _weights(trainer):
    return {f"{net}.{k}": v.clone() for net in ("generator", "discriminator")
            for k, v in getattr(trainer, net).state_dict().items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two epochs left alone, and one epoch of the same run whose epoch-end checkpoint is
    then removed, as if the process had been killed after the mid-epoch one."""
    tmp = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    alone = _trainer(tmp / "alone", checkpoint_every="4")
    alone(_batches())
    torch.manual_seed(0)
    _trainer(tmp / "cut", checkpoint_every="4", epochs=1)(_batches())  # saves after iterations 4 and 6
    (tmp / "cut" / "checkpoints" / "gan1.model").unlink()
    return _weights(alone), tmp / "cut"


def _resume(cut, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(cut, folder)
    torch.manual_seed(123)  # whatever the process seeds, the checkpoint's generators win
    resumed = _trainer(folder, checkpoint_every="4")
    resumed.load_model(str(folder / "checkpoints" / "gan0.model"))
    return resumed


def test_a_run_killed_after_a_mid_epoch_checkpoint_resumes_exactly(runs, tmp_path):
    alone, cut = runs
    state = load_checkpoint(cut / "checkpoints" / "gan0.model")["train_state"]
    assert (state["epoch"], state["batch"]) == (0, 4)
    resumed = _resume(cut, tmp_path)
    assert (resumed.start_epoch, resumed.start_batch, resumed.iteration) == (0, 4, 4)
    resumed(_batches())
    assert resumed.iteration == 12
    weights = _weights(resumed)
    assert all(torch.equal(alone[k], weights[k]) for k in alone), [k for k in alone if not torch.equal(alone[k], weights[k])]


def test_the_graph_ready_iteration_resumes_to_the_same_weights(runs, tmp_path):
    from torchgan_sagan.trainer.cuda_graphs import GraphedIterations

    alone, cut = runs
    resumed = _resume(cut, tmp_path)
    resumed.graphed = GraphedIterations(resumed, capture=False)  # the iteration CUDA graphs capture, run eagerly
    resumed(_batches())
    weights = _weights(resumed)
    assert resumed.iteration == 12 and all(torch.equal(alone[k], weights[k]) for k in alone)


def test_without_the_generator_states_the_same_resume_differs(runs, tmp_path):
    """The check above can fail: the noise of the continuation comes from the checkpoint."""
    alone, cut = runs
    resumed = _resume(cut, tmp_path)
    resumed._pending_rng = None
    resumed(_batches())
    weights = _weights(resumed)
    assert not all(torch.equal(alone[k], weights[k]) for k in alone)


def test_a_nan_stops_the_run_and_no_checkpoint_holds_it(tmp_path, poison_discriminator):
    poison_discriminator(at_call=3 * 8)  # iteration 8
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


def test_a_nan_with_rollback_goes_back_halves_the_rates_and_finishes(tmp_path, poison_discriminator, capsys):
    poison_discriminator(at_call=3 * 8)
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
    trainer = _trainer(tmp_path / "run", epochs=1, on_divergence="rollback", max_rollbacks=2)
    trainer(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(IMAGES.float() / 127.5 - 1), batch_size=8))
    trainer.epochs = 2
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
