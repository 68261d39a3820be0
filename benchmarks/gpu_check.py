"""What a real GPU says about the training step: host syncs, finite losses, kernels.

For each network (registered configs and ``+tag`` variants, as in ``throughput.py``;
``tutorial-torchgan`` is torchgan's tutorial network with its own losses, for
comparison) a trainer is built on the GPU and trained a few iterations on a random
batch (with the optimizers ``examples/celeba.py`` trains with: fused Adam); then every
operation that makes the host wait for the GPU during ``--iters`` more iterations is
counted, with the Python line that asked for it: what
``torch.cuda.set_sync_debug_mode("warn")`` reports, and every ``Event.synchronize`` and
``Stream.synchronize``, which it does not. Then the same over the real loop, as
``examples/celeba.py`` trains: uint8 images (as the image cache holds them) served by
``DeviceBatches`` (on the GPU, and through its pinned host path) into the trainer's own
loop for an epoch of ``--iters`` batches; its epoch end and checkpoint, which read back
by design, run outside the count. The losses must stay finite. Then the attention's
fused path is run with one allowed kernel per dtype (memory-efficient for float32 on
unpadded widths, flash for bf16 on padded ones) and compared with the explicit path.
Last, ``cuda_graphs=True`` (``--graph-nets``): the same iterations as CUDA-graph replays
and eagerly twice (Adam made capturable too) from one seed, the weights of the replays
compared with the eager run's beside the two eager runs' own difference (the control:
TF32, autotuning and nondeterministic kernels), their time per iteration and the
replays' host syncs counted; a capture that fell back is reported with its reason.
The JSON report (``--out``) is written after each section.

    python benchmarks/gpu_check.py                       # needs CUDA
    python benchmarks/gpu_check.py --nets sagan_32 sagan_32+bf16 --out syncs.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import traceback
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


def _caller() -> str:
    """``package/file.py:line`` of the code that called the function calling this."""
    frame = traceback.extract_stack(limit=3)[0]
    return _where(warnings.WarningMessage("", UserWarning, frame.filename, frame.lineno))


@contextlib.contextmanager
def _waits_counted(seen: list):
    """Event and stream waits (``Event.synchronize``, ``Stream.synchronize``) recorded in
    ``seen`` by caller: the host waits that the sync debug mode does not report."""
    originals = {cls: cls.synchronize for cls in (torch.cuda.Event, torch.cuda.Stream)}

    def counting(original):
        def counted(self):
            seen.append(_caller())
            return original(self)
        return counted

    for cls, original in originals.items():
        cls.synchronize = counting(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.synchronize = original


def count_syncs(step, iters: int) -> Counter:
    """Host syncs per source line during ``iters`` calls of ``step``: what
    ``torch.cuda.set_sync_debug_mode("warn")`` reports, and every wait on an event or a
    stream."""
    torch.cuda.synchronize()
    waits = []
    with warnings.catch_warnings(record=True) as seen, _waits_counted(waits):
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(iters):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()  # outside the count
    return Counter(_where(w) for w in seen if "synchronizing" in str(w.message)) + Counter(waits)


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


def _train_from_seed(spec: str, batch: int, iters: int, device, folder: Path, *, graphs: bool, extra: dict):
    """``spec`` built and trained ``2 * iters`` iterations from seed 0 (eagerly, or as
    CUDA-graph replays): the trainer, ms per iteration over the last ``iters`` and the
    host syncs of ``iters`` more. Eager runs get capturable Adam too (the graphs'
    arithmetic); either way with the optimizer ``examples/celeba.py`` builds (fused)."""
    torch.manual_seed(0)
    trainer, step = build(spec, batch, 0, device, folder, cuda_graphs=graphs, **extra)
    if not graphs:
        for optimizer_name in trainer.optimizer_names:
            make_capturable(getattr(trainer, optimizer_name))
    elif trainer.graphed is None:
        return trainer, None, None
    torch.manual_seed(1)
    trainer.logger.every = 10 ** 9
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / iters
    return trainer, ms, count_syncs(step, iters)


def _max_relative_difference(a, b) -> float:
    return max(((x - y).abs().max() / x.abs().max().clamp_min(1e-6)).item()
               for x, y in zip(_weights(a), _weights(b)) if x.numel())


def check_cuda_graphs(spec: str, batch: int, iters: int, device, workdir: Path) -> dict:
    """``spec`` trained from one seed on one batch three times: as CUDA-graph replays,
    eagerly, and eagerly again. The largest weight difference relative to the weight's
    scale between the replays and the eager run, beside the same between the two eager
    runs (TF32, cuDNN's autotuning and nondeterministic backward kernels make those
    differ too: the control), ms per iteration, and the host syncs per replayed
    iteration. A capture that fell back (the run went on eagerly) is reported with its
    reason and the numbers of the run it became."""
    name, ema = spec.removesuffix("+ema"), spec.endswith("+ema")
    extra = {"ema_decay": 0.999, "ema_start": 0} if ema else {}
    graphed, graph_ms, syncs = _train_from_seed(name, batch, iters, device, workdir / "graphs", graphs=True,
                                                extra=extra)
    if graph_ms is None:
        return {"refused": graphed.cuda_graph_refusals}
    eager, eager_ms, _ = _train_from_seed(name, batch, iters, device, workdir / "eager", graphs=False, extra=extra)
    again, again_ms, _ = _train_from_seed(name, batch, iters, device, workdir / "eager2", graphs=False, extra=extra)
    found = {"max_relative_weight_diff": _max_relative_difference(eager, graphed),
             "eager_vs_eager_weight_diff": _max_relative_difference(eager, again),
             "eager_ms": eager_ms, "eager_again_ms": again_ms, "graph_ms": graph_ms,
             "syncs_per_step": sum(syncs.values()) / iters, "where": dict(syncs)}
    if graphed.graphed is None:  # a capture failed: it trained on eagerly
        found["fell_back"] = graphed.cuda_graph_refusals
        found["graphs"] = 0
    else:
        found["graphs"] = len(graphed.graphed.graphs)
    return found


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
    rows, nets = [], {}
    report = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "nets": nets}
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
        nets[spec] = {"syncs_per_step": per_step, "where": dict(syncs), "log_point_syncs": dict(log_point),
                        "real_loop_syncs_per_step": {p: dict(c) for p, c in loops.items()}, "losses_finite": finite}
        top = ", ".join(f"{k} x{v:g}" for k, v in (syncs + loops["gpu"] + loops["pinned"]).most_common(3))
        rows.append([spec, f"{per_step:g}", f"{sum(loops['gpu'].values()):g}", f"{sum(loops['pinned'].values()):g}",
                     sum(log_point.values()), "yes" if finite else "NO", top or "-"])
        print(f"{spec}: {per_step:g} syncs/step {dict(syncs)}; real loop {nets[spec]['real_loop_syncs_per_step']}",
              flush=True)
        save(args.out, report)
    print(markdown_table(["net", "host syncs per step", "per step, real loop (images on GPU)",
                          "per step, real loop (pinned host path)", "syncs per log point", "losses finite",
                          "where (top 3)"], rows))
    report["attention"] = kernels = check_attention_kernels()
    save(args.out, report)
    print(markdown_table(["layout", "autocast", "only kernel allowed", "output dtype", "max diff vs explicit"],
                         kernels))
    graphs, graph_rows = {}, []
    report["cuda_graphs"] = graphs
    for spec in args.graph_nets:
        graphs[spec] = found = check_cuda_graphs(spec, args.batch, 2 * args.iters + 10, device, workdir)
        save(args.out, report)
        if "refused" in found:
            graph_rows.append([spec, "refused: " + "; ".join(found["refused"]), "", "", "", "", "", ""])
            continue
        graph_rows.append([spec, f"{found['eager_ms']:.2f}", f"{found['graph_ms']:.2f}"
                           + (f" (fell back: {'; '.join(found['fell_back'])})" if "fell_back" in found else ""),
                           f"{found['eager_ms'] / found['graph_ms']:.2f}x", f"{found['max_relative_weight_diff']:.1e}",
                           f"{found['eager_vs_eager_weight_diff']:.1e}", found["graphs"],
                           f"{found['syncs_per_step']:g}"])
        print(f"{spec}: cuda graphs {found}", flush=True)
    print(markdown_table(["net", "eager ms/iter", "graphed ms/iter", "speed-up", "max relative weight diff, "
                          "graphs vs eager", "the same, eager vs eager", "graphs", "host syncs per replayed step"],
                         graph_rows))
    return 0


def save(path, report: dict) -> None:
    """The report so far (each section as it completes: a run cut short keeps what it measured)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
