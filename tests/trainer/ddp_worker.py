"""Run by tests/test_distributed.py under torchrun: one DistributedTrainer iteration.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT [sync]

Each rank seeds its nets and its batch differently; DDP must make the nets equal at
construction (broadcast from rank 0) and keep them equal through the step (averaged
gradients). Each rank saves its nets' state to OUT/rank<r>.pt, with the weights it
started from and its batch.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from torchgan_sagan import get_config, make_trainer, train_step  # noqa: E402


def main() -> None:
    out, sync = Path(sys.argv[1]), "sync" in sys.argv[2:]
    rank = int(os.environ["RANK"])
    torch.manual_seed(rank)  # different initial weights on each rank
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, batch_size=4, epochs=1, sample_size=4,
                     d_batchnorm=True, ema_decay=0.5)
    # gloo on the CPU, also where there are GPUs (fewer of them than ranks, perhaps).
    trainer = make_trainer(cfg, out=out, distributed=True, sync_batchnorm=sync, backend="gloo")
    initial = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    train_step(trainer, torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(100 + rank)) * 2 - 1)
    torch.save({"generator": trainer.generator.state_dict(), "discriminator": trainer.discriminator.state_dict(),
                "initial_generator": initial, "batch": trainer.real_inputs,
                "world_size": trainer.world_size, "wrapped": sorted(trainer.wrapped)},
               out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
