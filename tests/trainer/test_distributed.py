"""DistributedTrainer and examples/celeba.py under torchrun: 2 CPU processes, gloo."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchgan_sagan import train_step
from torchgan_sagan.trainer.checkpoints import latest_intact_checkpoint
from torchgan_sagan.trainer.distributed import init_distributed, launched_by_torchrun, shard_loader

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _torchrun(*args, cwd, env=None):
    result = subprocess.run([*TORCHRUN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env=None if env is None else {**os.environ, **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _is_batchnorm_statistic(key):
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.slow
def test_ranks_hold_identical_weights_after_a_step(tmp_path):
    _torchrun(ROOT / "tests" / "trainer" / "ddp_worker.py", tmp_path, cwd=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["wrapped"] == ["discriminator", "generator"]
    assert not torch.equal(ranks[0]["batch"], ranks[1]["batch"])  # each rank saw its own data
    compared = 0
    for net in ("generator", "discriminator"):
        for key, value in ranks[0][net].items():
            if _is_batchnorm_statistic(key) and not key.startswith("ema."):
                continue  # local until DDP syncs them from rank 0 at the next forward
            assert torch.equal(value, ranks[1][net][key]), f"{net}.{key} differs between ranks"
            compared += 1
    assert compared > 100
    # The step changed the weights (from rank 0's, which DDP broadcast at construction).
    key = "model.0.parametrizations.weight.original"
    assert not torch.equal(ranks[0]["generator"][key], ranks[0]["initial_generator"][key])
    assert torch.equal(ranks[0]["initial_generator"][key], ranks[1]["initial_generator"][key])
    # A full disk while rank 0 writes a checkpoint ends both ranks with that error, and
    # leaves no partial file.
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}_full_disk.txt").read_text() == f"OSError {errno.ENOSPC}"
    # SIGTERM to rank 1 alone after iteration 1: both ranks stop at the log point of
    # iteration 2, after one checkpoint there, which rank 0 wrote.
    assert [(tmp_path / f"rank{rank}_sigterm.txt").read_text() for rank in (0, 1)] == ["SIGTERM at iteration 2"] * 2
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.model")
    written = torch.load(checkpoint, weights_only=False)
    assert written["train_state"]["iteration"] == 2 and written["train_state"]["batch"] == 2


@pytest.mark.slow
def test_example_runs_under_torchrun_writes_once_and_resumes(tmp_path):
    script = ROOT / "examples" / "celeba.py"
    out = tmp_path / "ddp"
    common = ["--max-images", 10, "--batch-size", 4, "--step-channels", 8, "--out", out, "--ema", "0.9"]
    first = _torchrun(script, "--epochs", 1, *common, cwd=tmp_path)
    assert (out / "train.log").read_text().count("Saving Model at") == 1  # rank 0 only
    assert "Saving Model at" not in first.stdout  # torchgan's output goes to the log
    assert first.stdout.count("Distributed: 2 processes, backend gloo, global batch 8.") == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["gan0.model"]
    assert (out / "samples" / "epoch1_generator.png").exists() and (out / "attention.png").exists()
    checkpoint = torch.load(out / "checkpoints" / "gan0.model", weights_only=False)
    assert checkpoint["epoch"] == 1 and checkpoint["sagan_config"]["fields"]["step_channels"] == 8
    assert not any(k.startswith("module.") for k in checkpoint["generator"])  # plain nets' keys
    # 20 images (10 faces and mirrors), 2 ranks x batch 4: 2 steps per epoch on each rank.
    assert int(checkpoint["generator"]["ema.steps"]) == 2

    # Resumed with a checkpoint every iteration; rank 1 is killed by SIGKILL after the first
    # (iteration 3, mid-epoch 2). torchrun restarts both workers with the same command line,
    # and --resume auto continues from that checkpoint: nothing before it is trained again.
    killer = ROOT / "tests" / "trainer" / "killed_worker.py"
    resumed = _torchrun("--max-restarts", 1, killer, "--epochs", 3, *common, "--resume", "auto",
                        "--checkpoint-every", 1, cwd=tmp_path, env={"KILL_RANK": "1", "KILL_AFTER_SAVES": "1"})
    assert resumed.stdout.count("Resuming at epoch 2 of 3;") == 1  # the first attempt
    assert resumed.stdout.count("Resuming at epoch 2 of 3, batch 2.") == 1  # the restart
    checkpoint = latest_intact_checkpoint(out / "checkpoints")[1]
    assert checkpoint["epoch"] == 3 and checkpoint["train_state"]["iteration"] == 6
    assert int(checkpoint["generator"]["ema.steps"]) == 6  # 2 steps an epoch, none twice

    # A distributed checkpoint resumes in a single process, when asked for on purpose: one
    # process of batch 4 is half the global batch of two.
    single = subprocess.run([sys.executable, str(script), "--epochs", "4", *map(str, common), "--resume",
                             "--allow-data-change"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "Resuming on other data, as asked (--allow-data-change): processes 2 -> 1." in single.stdout
    assert "Resuming at epoch 4 of 4." in single.stdout


def test_shard_loader_splits_the_data_between_ranks():
    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True, drop_last=True)
    shards = [shard_loader(loader, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([b[0] for b in s]).tolist() for s in shards]
    assert sorted(seen[0] + seen[1]) == [float(i) for i in range(10)] or len(seen[0]) == len(seen[1]) == 4
    assert not set(seen[0]) & set(seen[1])
    assert shards[0].batch_size == 2 and shards[0].sampler.shuffle
    assert shard_loader(shards[0], rank=0, world_size=2) is shards[0]


def test_outside_torchrun_the_error_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not launched_by_torchrun()
    with pytest.raises(RuntimeError, match="launch with torchrun --nproc_per_node N"):
        init_distributed()


@pytest.fixture
def world_of_one(monkeypatch, tmp_path):
    """A process group of this process alone (gloo), as torchrun would set it up."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    yield tmp_path
    if dist.is_initialized():
        dist.destroy_process_group()


def _trainer(tmp_path, **kwargs):
    from torchgan_sagan import get_config, make_trainer

    cfg = get_config("sagan_32", image_channels=1, step_channels=8, sample_size=4, epochs=1,
                     **kwargs.pop("config", {}))
    return make_trainer(cfg, out=tmp_path, distributed=True, backend="gloo", **kwargs)


def test_world_of_one_trains_an_epoch_and_keeps_torchgan_attributes(world_of_one):
    trainer = _trainer(world_of_one)
    assert (trainer.rank, trainer.world_size, trainer.device.type) == (0, 1, "cpu")
    wrapped = trainer.wrapped["generator"]
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    assert wrapped.encoding_dims == trainer.generator.encoding_dims and wrapped.label_type == "none"
    assert len(wrapped.sampler(3, "cpu")) == 1
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1, torch.zeros(8, dtype=torch.long))
    trainer(torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True))
    assert trainer.loss_information["generator_iters"] == 2
    assert (world_of_one / "checkpoints" / "gan0.model").exists()
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)  # the logs restart with each epoch
    assert sum(trainer.logger.get_grad_viz().logs["generator"]) > 0  # logged from the plain nets


def test_sync_batchnorm_on_the_cpu_is_a_clear_error(world_of_one):
    with pytest.raises(ValueError, match="sync_batchnorm needs CUDA devices"):
        _trainer(world_of_one, sync_batchnorm=True)


def test_feature_matching_turns_on_unused_parameter_detection(world_of_one):
    trainer = _trainer(world_of_one, config={"loss": "feature_matching"})
    assert trainer.wrapped["discriminator"].find_unused_parameters
    for _ in range(2):
        train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert not _trainer(world_of_one / "x").wrapped["discriminator"].find_unused_parameters


@pytest.mark.parametrize("overrides", [{}, {"ema_decay": 0.9, "diffaugment": "color"}, {"num_classes": 10},
                                       {"backbone": "resnet", "num_classes": 10, "d_leaky_slope": None}],
                         ids=["plain", "ema-diffaugment", "conditional", "resnet"])
def test_torchgans_parallel_trainer_trains_our_nets(tmp_path, overrides):
    """torchgan's ParallelTrainer wraps every child of a net in DataParallel (on a machine
    without GPUs DataParallel calls the module directly, so this checks the plumbing;
    with one, the first GPU)."""
    from torchgan.trainer import ParallelTrainer

    from torchgan_sagan import get_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, sample_size=4, epochs=1, **overrides)
    trainer = ParallelTrainer(cfg.network_params(), cfg.losses(), devices=[torch.device(device, 0)],
                              checkpoints=str(tmp_path / "gan"), recon=str(tmp_path), log_dir=str(tmp_path / "logs"),
                              **cfg.trainer_kwargs())
    assert isinstance(trainer.generator.model, torch.nn.DataParallel)
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1, torch.randint(0, 10, (8,)))
    trainer(torch.utils.data.DataLoader(data, batch_size=4))
    g = trainer.generator.eval()
    assert g(*g.sampler(4, device)).shape == (4, 1, 32, 32)
    assert g.attention_maps(*g.sampler(2, device))[1][16].shape == (2, 256, 64)
    if "ema_decay" in overrides:
        assert int(g.ema.module.steps) == 2


def test_an_existing_gloo_group_keeps_the_processes_on_the_cpu(world_of_one, monkeypatch):
    """celeba.py --device cpu under torchrun on a machine with GPUs: the gloo group it
    started decides, not the GPUs it sees."""
    init_distributed("gloo")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("moved to a GPU"))
    assert init_distributed(None)[2] == torch.device("cpu")
    assert init_distributed("nccl")[2] == torch.device("cpu")


def test_every_epoch_ends_with_the_ranks_in_step_after_rank_0_evaluated(world_of_one, monkeypatch):
    import torch.distributed as dist

    trainer = _trainer(world_of_one)
    events = []
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: events.append("barrier"))
    broadcast = dist.broadcast_object_list
    monkeypatch.setattr(dist, "broadcast_object_list", lambda *a, **k: (events.append("saved"), broadcast(*a, **k)))
    from torchgan.trainer import Trainer

    monkeypatch.setattr(Trainer, "eval_ops", lambda self, **k: events.append("eval"))
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1, torch.zeros(8, dtype=torch.long))
    trainer(torch.utils.data.DataLoader(data, batch_size=4, drop_last=True))
    # rank 0 evaluates the metrics, tells the others how its checkpoint went (and waits until
    # they know), then the end-of-epoch barrier
    assert events == ["eval", "saved", "barrier", "barrier"]


def averaged_statistics(names):
    return {name for name in names if name.startswith("ema.")}


def test_the_weight_average_is_not_broadcast_at_every_forward(world_of_one):
    trainer = _trainer(world_of_one, config={"ema_decay": 0.9, "g_batchnorm": True})
    ignored = trainer.wrapped["generator"].parameters_to_ignore
    ema_buffers = {name for name, _ in trainer.generator.named_buffers() if name.startswith("ema.")}
    averaged_weights = {name for name in ema_buffers if name.endswith((".original", ".bias", ".weight"))}
    assert averaged_weights and averaged_weights <= ignored  # the copy of G
    assert "ema.steps" in ignored and any(name.endswith("._u") for name in ignored)
    # The average's BatchNorm statistics are recomputed from a fixed seed on every rank;
    # G's own batch statistics still come from rank 0.
    assert any("running_" in name for name in averaged_statistics(ignored))
    assert not any("running_" in name for name in ignored - averaged_statistics(ignored))


def test_the_residual_nets_train_under_ddp(world_of_one):
    trainer = _trainer(world_of_one, config={"backbone": "resnet", "d_leaky_slope": None, "ema_decay": 0.9})
    assert type(trainer.generator).__name__ == "SAGANResNetGenerator"
    for _ in range(2):
        train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert trainer.loss_information["generator_iters"] == 2


def test_a_silent_rank_keeps_its_logs_as_floats(world_of_one, monkeypatch):
    """Ranks other than 0 write nothing, but their loss logs must not pile up device scalars."""
    trainer = _trainer(world_of_one, log_every=2)
    written = []
    monkeypatch.setattr(type(trainer.logger.get_loss_viz()), "log_tensorboard", lambda *a: written.append(a))
    trainer.logger.silent = True  # what a rank other than 0 does
    for _ in range(4):
        train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    logs = trainer.logger.get_loss_viz().logs
    assert all(isinstance(v, float) for values in logs.values() for v in values) and written == []
    assert isinstance(trainer.loss_information["generator_losses"], float)


def test_device_batches_shard_by_themselves_and_must_match_the_rank(world_of_one):
    from torchgan_sagan.data import DeviceBatches
    from torchgan_sagan.trainer.monitoring import RunProgress

    trainer = _trainer(world_of_one)
    with pytest.raises(ValueError, match="built for rank 1 of 2, and this process is rank 0 of 1"):
        trainer.train(DeviceBatches(torch.rand(8, 1, 32, 32) * 2 - 1, 2, rank=1, world=2))
    batches = DeviceBatches(torch.rand(8, 1, 32, 32) * 2 - 1, 4)
    trainer.train(RunProgress(batches, trainer, show=False))  # seen through the progress bar
    assert trainer.loss_information["generator_iters"] == 2 and batches.epoch == 1
