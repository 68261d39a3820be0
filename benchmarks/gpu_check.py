"""What a real GPU says about the training step: host syncs, finite losses, kernels.

For each network (registered configs and ``+tag`` variants, as in ``throughput.py``;
``tutorial-torchgan`` is torchgan's tutorial network with its own losses, for
comparison) a trainer is built on the GPU and trained a few iterations on a random
batch; then, with ``torch.cuda.set_sync_debug_mode("warn")``, every operation that
makes the host wait for the GPU during ``--iters`` more iterations is counted, with
the Python line that asked for it. The losses must stay finite. Then the attention's
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

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import markdown_table  # noqa: E402
from throughput import build  # noqa: E402

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
        report[spec] = {"syncs_per_step": per_step, "where": dict(syncs), "log_point_syncs": dict(log_point),
                        "losses_finite": finite}
        top = ", ".join(f"{k} x{v}" for k, v in syncs.most_common(3))
        rows.append([spec, f"{per_step:g}", sum(log_point.values()), "yes" if finite else "NO", top or "-"])
        print(f"{spec}: {per_step:g} syncs/step {dict(syncs)}", flush=True)
    print(markdown_table(["net", "host syncs per step", "syncs per log point", "losses finite", "where (top 3)"], rows))
    kernels = check_attention_kernels()
    print(markdown_table(["layout", "autocast", "only kernel allowed", "output dtype", "max diff vs explicit"], kernels))
    if args.out:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                                        "nets": report, "attention": kernels}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
