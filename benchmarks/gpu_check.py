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
Last, ``cuda_graphs=True`` (``--graph-nets``): the same iterations eager (Adam made
capturable too) and as CUDA-graph replays from one seed, their weights compared, their
time per iteration and the replays' host syncs counted.

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
from torchgan_sagan.trainer.cuda_graphs import make_capturable  # noqa: E402
from torchgan_sagan.trainer.trainer import cuda_settings  # noqa: E402

DEFAULT_NETS = ["tutorial-torchgan", "sagan_32", "sagan_faces_32", "sagan_faces_32+bf16", "sagan_faces_32+cl",
                "sagan_faces_32+ema", "sagan_faces_32+diffaug", "sagan_cond_digits_32", "sagan_celeba_64",
                "sagan_tutorial_64", "sagan_resnet_cifar_32", "sagan_resnet_celeba_64",
                "sagan_resnet_celeba_64+bf16", "sagan_cond_imagenet_128", "sagan_resnet_imagenet_128"]
GRAPH_NETS = ["sagan_faces_32+ema", "sagan_celeba_64", "sagan_tutorial_64", "sagan_cond_digits_32",
              "sagan_resnet_celeba_64"]


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


def _weights(trainer) -> list:
    return [t.float() for name in trainer.model_names for t in getattr(trainer, name).state_dict().values()]


def check_cuda_graphs(spec: str, batch: int, iters: int, device, workdir: Path) -> dict:
    """``spec`` trained ``iters`` iterations eagerly and as CUDA-graph replays from one
    seed on the same batch: the largest weight difference relative to the weight's
    scale, ms per iteration of each (after the warm-up and capture), host syncs per
    replayed iteration."""
    name, ema = spec.removesuffix("+ema"), spec.endswith("+ema")
    extra = {"ema_decay": 0.999, "ema_start": 0} if ema else {}
    runs = {}
    for graphs in (True, False):  # graphs first: a refusal ends the check
        torch.manual_seed(0)
        trainer, step = build(name, batch, 0, device, workdir / f"graphs{graphs}", cuda_graphs=graphs, **extra)
        if not graphs:
            for optimizer_name in trainer.optimizer_names:  # the same Adam arithmetic as the graphs'
                make_capturable(getattr(trainer, optimizer_name))
        elif trainer.graphed is None:
            return {"refused": trainer.cuda_graph_refusals}
        torch.manual_seed(1)
        trainer.logger.every = 10 ** 9
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        torch.cuda.synchronize()
        runs[graphs] = (trainer, start.elapsed_time(end) / iters, count_syncs(step, iters))
    (eager, eager_ms, _), (graphed, graph_ms, syncs) = runs[False], runs[True]
    diff = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-6)).item()
               for a, b in zip(_weights(eager), _weights(graphed)) if a.numel())
    return {"max_relative_weight_diff": diff, "eager_ms": eager_ms, "graph_ms": graph_ms,
            "graphs": len(graphed.graphed.graphs), "syncs_per_step": sum(syncs.values()) / iters,
            "where": dict(syncs)}


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
                layer.fused = "on"
                with sdpa_kernel([backend]):
                    fused = layer(x)
                layer.fused = "off"
                explicit = layer(x)
            err = (fused.float() - explicit.float()).abs().max().item()
            rows.append([layout, str(dtype).replace("torch.", ""), backend.name, str(fused.dtype).replace("torch.", ""),
                         f"{err:.1e}"])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Host syncs and finite losses of training steps on a GPU.")
    p.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--graph-nets", nargs="*", default=GRAPH_NETS, help="nets for the CUDA-graph check")
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
    graphs, graph_rows = {}, []
    for spec in args.graph_nets:
        graphs[spec] = found = check_cuda_graphs(spec, args.batch, 2 * args.iters + 10, device, workdir)
        if "refused" in found:
            graph_rows.append([spec, "refused: " + "; ".join(found["refused"]), "", "", "", "", ""])
            continue
        graph_rows.append([spec, f"{found['eager_ms']:.2f}", f"{found['graph_ms']:.2f}",
                           f"{found['eager_ms'] / found['graph_ms']:.2f}x", f"{found['max_relative_weight_diff']:.1e}",
                           found["graphs"], f"{found['syncs_per_step']:g}"])
        print(f"{spec}: cuda graphs {found}", flush=True)
    print(markdown_table(["net", "eager ms/iter", "graphed ms/iter", "speed-up", "max relative weight diff",
                          "graphs", "host syncs per replayed step"], graph_rows))
    if args.out:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                                        "nets": report, "attention": kernels, "cuda_graphs": graphs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
