"""Run by tests/test_distributed.py under torchrun: one DistributedTrainer iteration.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT [sync]

Each rank seeds its nets and its batch differently; DDP must make the nets equal at
construction (broadcast from rank 0) and keep them equal through the step (averaged
gradients). Each rank saves its nets' state to OUT/rank<r>.pt, with the weights it
started from and its batch.

Then the disk fills while rank 0 writes a checkpoint (``torch.save`` writes half a file
and raises ``OSError(ENOSPC)``): every rank must end with that error, none may wait for
rank 0 until the group's timeout (30 s here). Each rank writes what it raised to
OUT/rank<r>_full_disk.txt.

Last, rank 1 alone receives SIGTERM in the middle of an epoch: both ranks must stop at
the same iteration, after the same checkpoint (OUT/rank<r>_sigterm.txt).
"""

import errno
import os
import sys
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from torchgan_sagan import get_config, make_trainer, train_step  # noqa: E402
from torchgan_sagan.trainer.distributed import init_distributed  # noqa: E402


def main() -> None:
    out, sync = Path(sys.argv[1]), "sync" in sys.argv[2:]
    rank = int(os.environ["RANK"])
    torch.manual_seed(rank)  # different initial weights on each rank
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, batch_size=4, epochs=1, sample_size=4,
                     d_batchnorm=True, ema_decay=0.5)
    # gloo on the CPU, also where there are GPUs (fewer of them than ranks, perhaps).
    init_distributed("gloo", timeout=timedelta(seconds=30))
    trainer = make_trainer(cfg, out=out, distributed=True, sync_batchnorm=sync, backend="gloo")
    initial = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    train_step(trainer, torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(100 + rank)) * 2 - 1)
    torch.save({"generator": trainer.generator.state_dict(), "discriminator": trainer.discriminator.state_dict(),
                "initial_generator": initial, "batch": trainer.real_inputs,
                "world_size": trainer.world_size, "wrapped": sorted(trainer.wrapped)},
               out / f"rank{rank}.pt")
    full_disk(trainer, out, rank)
    sigterm_on_one_rank(trainer, out, rank)
    dist.destroy_process_group()


def full_disk(trainer, out: Path, rank: int) -> None:
    import torchgan.trainer.base_trainer as base_trainer

    from torchgan_sagan.files import atomic_write

    def write_half(f):
        f.write(b"the first half of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    real_torch = base_trainer.torch
    if rank == 0:  # the checkpoint's write alone fails (torch.save also serves the collectives)
        base_trainer.torch = type("TorchOnAFullDisk", (), {"save": staticmethod(
            lambda obj, path: atomic_write(path, write_half))})
    try:
        trainer.save_model(0)
        outcome = "saved"
    except OSError as err:
        outcome = f"OSError {err.errno}"
    except Exception as err:  # a timeout of the wait, for one
        outcome = f"{type(err).__name__}: {err}"
    finally:
        base_trainer.torch = real_torch
    (out / f"rank{rank}_full_disk.txt").write_text(outcome)


def sigterm_on_one_rank(trainer, out: Path, rank: int) -> None:
    """Rank 1 alone gets SIGTERM after its first iteration of an epoch of 4; with a log
    point every 2 iterations, both ranks must stop at iteration 2, after one checkpoint."""
    import signal

    from torchgan_sagan.data import DeviceBatches
    from torchgan_sagan.trainer import resumable
    from torchgan_sagan.trainer.preemption import StopRequested

    iterate = resumable.run_iteration

    def signalled(t):
        result = iterate(t)
        if rank == 1 and t.iteration == trainer.iteration and not t.stop_received:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    resumable.run_iteration = signalled
    trainer.logger.every, trainer.logger.iteration, trainer.iteration = 2, 0, 0
    trainer.start_epoch, trainer.epochs = 0, 1
    images = torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    try:
        trainer.train(DeviceBatches(images, 4, rank=rank, world=2))
        outcome = "trained to the end"
    except StopRequested as stop:
        outcome = f"{stop.name} at iteration {stop.iteration}"
    (out / f"rank{rank}_sigterm.txt").write_text(outcome)


if __name__ == "__main__":
    main()
