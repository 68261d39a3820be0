"""What a real GPU says about the training step: host syncs, finite losses, kernels.

For each network (registered configs and ``+tag`` variants, as in ``throughput.py``;
``tutorial-torchgan`` is torchgan's tutorial network with its own losses, for
comparison) a trainer is built on the GPU and trained a few iterations on a random
batch; then, with ``torch.cuda.set_sync_debug_mode("warn")``, every operation that
makes the host wait for the GPU during ``--iters`` more iterations is counted, with
the Python line that asked for it. Then the same over the real loop, as
``examples/celeba.py`` trains: uint8 images (as the image cache holds them) served by
``DeviceBatches`` (on the GPU, and through its pinned host path) into the trainer's own
loop for an epoch of ``--iters`` batches; its epoch end and checkpoint, which read back
by design, run outside the count. The losses must stay finite. Then the attention's
fused path is run with one allowed kernel per dtype (memory-efficient for float32 on
unpadded widths, flash for bf16 on padded ones) and compared with the explicit path.

    python benchmarks/gpu_check.py                       # needs CUDA
    python benchmarks/gpu_check.py --nets sagan_32 sagan_32+bf16 --out syncs.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import markdown_table  # noqa: E402
from throughput import build  # noqa: E402

from torchgan_sagan.data import DeviceBatches  # noqa: E402
from torchgan_sagan.layers import SelfAttention2d  # noqa: E402
from torchgan_sagan.trainer.trainer import cuda_settings  # noqa: E402

DEFAULT_NETS = ["tutorial-torchgan", "sagan_32", "sagan_faces_32", "sagan_faces_32+bf16", "sagan_faces_32+cl",
                "sagan_faces_32+ema", "sagan_faces_32+diffaug", "sagan_cond_digits_32", "sagan_celeba_64",
                "sagan_tutorial_64", "sagan_resnet_cifar_32", "sagan_resnet_celeba_64",
                "sagan_resnet_celeba_64+bf16", "sagan_cond_imagenet_128", "sagan_resnet_imagenet_128"]


def _where(w: warnings.WarningMessage) -> str:
    path = Path(w.filename)
    parts = path.parts
    for root in ("torchgan_sagan", "torchgan", "torch"):
        if root in parts:
            return f"{'/'.join(parts[parts.index(root):])}:{w.lineno}"
    return f"{path.name}:{w.lineno}"


def count_syncs(step, iters: int) -> Counter:
    """Host syncs per source line during ``iters`` calls of ``step``."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(iters):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()  # outside the count
    return Counter(_where(w) for w in seen if "synchronizing" in str(w.message))


def outside_the_count(trainer) -> None:
    """Run the trainer's epoch ends and checkpoints with sync checking off: they read
    back by design (the checkpoint, sample grids, the divergence check); what the count
    covers is what runs for every batch."""
    for owner, name in ((trainer, "_save"), (trainer, "eval_ops"), (trainer, "optim_ops"),
                        (trainer.logger, "run_end_epoch")):
        method = getattr(owner, name)

        def paused(*args, _method=method, **kwargs):
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("default")
            try:
                return _method(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(mode)

        setattr(owner, name, paused)


def real_loop_syncs(trainer, batch: int, batches: int, *, on_device: bool) -> Counter:
    """Host syncs per batch of an epoch of the trainer's own loop over ``DeviceBatches``
    of uint8 images (on the device, or gathered into pinned memory and copied without
    blocking), after an epoch of warm-up."""
    shape = (batch * batches, *trainer.real_inputs.shape[1:])  # the images the trainer was built for
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    loader = DeviceBatches(images, batch, device=trainer.device, seed=0, gpu_share=0.5 if on_device else 0.0)
    assert loader.on_device == on_device
    outside_the_count(trainer)
    trainer.start_epoch, trainer.epochs = 0, 1
    trainer.train(loader)  # warm-up
    trainer.start_epoch, trainer.epochs = 1, 2
    syncs = count_syncs(lambda: trainer.train(loader), 1)
    return Counter({where: n / batches for where, n in syncs.items()})


def check_attention_kernels() -> list:
    """Each (dtype, kernel) the fused path should take on CUDA, forced alone."""
    rows = []
    for layout in ("torchgan", "official"):
        for dtype, backend in ((torch.float32, SDPBackend.EFFICIENT_ATTENTION), (torch.bfloat16, SDPBackend.FLASH_ATTENTION)):
            layer = SelfAttention2d(64, layout=layout).cuda()
            with torch.no_grad():
                layer.gamma.fill_(1.0)
            x = torch.randn(4, 64, 16, 16, device="cuda")
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                with sdpa_kernel([backend]):
                    fused = layer(x)
                layer.fused = False
                explicit = layer(x)
                layer.fused = True
            err = (fused.float() - explicit.float()).abs().max().item()
            rows.append([layout, str(dtype).replace("torch.", ""), backend.name, str(fused.dtype).replace("torch.", ""),
                         f"{err:.1e}"])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Host syncs and finite losses of training steps on a GPU.")
    p.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: error: CUDA is not available on this machine")
    device = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, {cuda_settings(device)}")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "torchgan_sagan_gpu_check"
    rows, report = [], {}
    for spec in args.nets:
        torch.manual_seed(0)
        name, ema = spec.removesuffix("+ema"), spec.endswith("+ema")
        trainer, step = build(name, args.batch, 0, device, workdir,
                              **({"ema_decay": 0.999, "ema_start": 0} if ema else {}))
        trainer.logger.every = 10 ** 9  # the log point is counted apart, below
        for _ in range(3):
            step()
        syncs = count_syncs(step, args.iters)
        log_point = count_syncs(lambda: trainer.logger.read_back(trainer), 1)
        info = trainer.loss_information
        finite = all(math.isfinite(info[k]) for k in ("generator_losses", "discriminator_losses"))
        per_step = sum(syncs.values()) / args.iters
        loops = {path: real_loop_syncs(trainer, args.batch, args.iters, on_device=path == "gpu")
                 for path in ("gpu", "pinned")}
        finite = finite and all(math.isfinite(info[k]) for k in ("generator_losses", "discriminator_losses"))
        report[spec] = {"syncs_per_step": per_step, "where": dict(syncs), "log_point_syncs": dict(log_point),
                        "real_loop_syncs_per_step": {p: dict(c) for p, c in loops.items()}, "losses_finite": finite}
        top = ", ".join(f"{k} x{v:g}" for k, v in (syncs + loops["gpu"] + loops["pinned"]).most_common(3))
        rows.append([spec, f"{per_step:g}", f"{sum(loops['gpu'].values()):g}", f"{sum(loops['pinned'].values()):g}",
                     sum(log_point.values()), "yes" if finite else "NO", top or "-"])
        print(f"{spec}: {per_step:g} syncs/step {dict(syncs)}; real loop {report[spec]['real_loop_syncs_per_step']}",
              flush=True)
    print(markdown_table(["net", "host syncs per step", "per step, real loop (images on GPU)",
                          "per step, real loop (pinned host path)", "syncs per log point", "losses finite",
                          "where (top 3)"], rows))
    kernels = check_attention_kernels()
    print(markdown_table(["layout", "autocast", "only kernel allowed", "output dtype", "max diff vs explicit"], kernels))
    if args.out:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                                        "nets": report, "attention": kernels}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
