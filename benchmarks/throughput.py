"""Training throughput in torchgan's Trainer: torchgan's tutorial SAGAN against ours.

Each network trains through ``Trainer.train_iter`` (one D step and one G step with its
losses' own ``train_ops``, exactly what ``Trainer.train`` runs per batch) on a fixed
synthetic batch. Reported per network: milliseconds and images per second per
iteration (median of ``--iters``, networks interleaved round by round), the FLOPs of
one iteration (``torch.utils.flop_counter``), the achieved GFLOP/s, and the share of
this machine's fp32 matmul throughput that it reaches; on CUDA also the peak memory
of one iteration beyond what was allocated before it (the nets, optimizer state).

The fused attention pads queries and keys with zero columns to the widths its kernel
takes (``torchgan_sagan.layers.head_widths``: one width on the CPU), so it executes more
FLOPs than the layer needs. Two counts are
reported: "executed" (what ran) and "useful" (the same iteration with every attention
layer switched to its explicit path, which does no padding); the GFLOP/s columns use
each.

Networks (64x64 RGB, batch 64 unless told otherwise):

- ``tutorial-torchgan``: torchgan's tutorial network with torchgan's layers
  (``torchgan_sagan.models.torchgan_tutorial``), Wasserstein loss with clipping;
- ``tutorial-ours``: the same widths with this package's nets and attention
  (config ``sagan_tutorial_64``);
- any registered config name, e.g. ``sagan_celeba_64`` (the paper preset).

``+tag`` suffixes change options of one of ours (``torchgan_sagan.recipe.cli.TAGS``): ``+cl``
channels-last, ``+compile`` torch.compile (its first-compile time is reported),
``+bf16`` autocast, ``+official`` the paper's attention layout, ``+dropin`` torchgan's
layout (C/8 queries and keys, C values, no pooling), ``+unfused``, ``+diffaug``; and
``+dgrads``: the generator step computes D's weight gradients too, as torchgan's
losses do (the package's losses skip them), for a before/after comparison; and
``+torchgansteps``: both of the package's losses train through torchgan's own ``train_ops`` (a
host read of each loss, D's weight gradients in G's step, an autograd graph through G
in D's step, D's spectral norm computed for each of its two calls).

    python benchmarks/throughput.py
    python benchmarks/throughput.py --nets tutorial-torchgan tutorial-ours tutorial-ours+compile
    python benchmarks/throughput.py --device cuda --batch 256 --nets sagan_celeba_64 sagan_celeba_64+bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchgan.losses import DiscriminatorLoss, GeneratorLoss  # noqa: E402
from torchgan.trainer import Trainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (interleaved_times, machine_description, markdown_table, matmul_gflops, peak_memory,  # noqa: E402
                      pick_device)

from torchgan_sagan import get_config, list_configs, make_trainer, train_step  # noqa: E402
from torchgan_sagan.recipe.cli import parse_spec  # noqa: E402
from torchgan_sagan.trainer.trainer import cuda_settings, fused_adam  # noqa: E402
from torchgan_sagan.layers import SelfAttention2d  # noqa: E402
from torchgan_sagan.models.torchgan_tutorial import tutorial_losses, tutorial_network_params  # noqa: E402


def _with_torchgans_step(loss):
    """``loss`` (one of the package's) training through torchgan's own ``train_ops``;
    torchgan's losses as they are."""
    if type(loss).__module__ != "torchgan_sagan.losses":
        return loss
    base = GeneratorLoss if isinstance(loss, GeneratorLoss) else DiscriminatorLoss
    loss.train_ops = base.train_ops.__get__(loss)
    return loss


def tutorial_torchgan(step_channels: int):
    return tutorial_network_params(step_channels=step_channels), tutorial_losses(), 64, 3


def ours(spec: str, step_channels: int):
    try:
        name, overrides = parse_spec(spec, ["tutorial-ours", *list_configs()])
    except ValueError as err:
        raise SystemExit(f"throughput.py: error: {err}") from err
    config = "sagan_tutorial_64" if name == "tutorial-ours" else name
    if name == "tutorial-ours" or step_channels:
        overrides["step_channels"] = step_channels or 32
    return get_config(config, **overrides)


def build(spec: str, batch: int, step_channels: int, device: torch.device, workdir: Path, **overrides):
    """A trainer for ``spec`` (with config ``overrides``) and a step function that
    trains it on one fixed batch. The package's nets train with the optimizers
    ``make_trainer`` gives a config (fused Adam on CUDA); torchgan's tutorial network
    with its own (as a torchgan user's would)."""
    if spec == "tutorial-torchgan":
        # torchgan's network under the recipe of the tutorial preset.
        cfg = get_config("sagan_tutorial_64", step_channels=step_channels or 32)
        params, losses = tutorial_network_params(step_channels=step_channels or 32), tutorial_losses()
    else:
        tags = spec.split("+")
        cfg = ours("+".join(t for t in tags if t not in ("dgrads", "torchgansteps")), step_channels
                   ).replace(**overrides)
        params, losses = cfg.network_params(), cfg.losses()
        if "dgrads" in tags:  # torchgan's behaviour: the G step also computes D's weight gradients
            for loss in losses:
                if hasattr(loss, "freeze_discriminator"):
                    loss.freeze_discriminator = False
        if "torchgansteps" in tags:  # the package's losses through torchgan's own train_ops
            losses = [_with_torchgans_step(loss) for loss in losses]
        params = fused_adam(params, device.type == "cuda")  # the optimizer examples/celeba.py trains with
    trainer = make_trainer(cfg, out=workdir / spec, device=device, network_params=params, losses=losses,
                           sample_size=4)
    images = torch.rand(batch, cfg.image_channels, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    labels = torch.randint(0, cfg.num_classes, (batch,), device=device) if cfg.num_classes else None
    return trainer, lambda: train_step(trainer, images, labels)


def count_flops(trainer: Trainer, step, explicit_attention: bool = False) -> int:
    """FLOPs of one training ``step`` of ``trainer``; with ``explicit_attention`` our attention layers run
    unfused (no padded queries and keys) while counting, then are switched back."""
    layers = {m: m.fused for name in trainer.model_names for m in getattr(trainer, name).modules()
              if isinstance(m, SelfAttention2d)} if explicit_attention else {}
    for m in layers:
        m.fused = "off"
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        return counter.get_total_flops()
    finally:
        for m, mode in layers.items():
            m.fused = mode


def profile_table(step, device: torch.device, rows: int) -> str:
    """torch.profiler's table of one ``step``, by self time on ``device``, with the
    number of kernel launches (CUDA) at the top."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    return f"kernel launches: {launches}\n" + events.table(sort_by=key, row_limit=rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Trainer throughput: torchgan's tutorial SAGAN against ours.")
    p.add_argument("--nets", nargs="+", default=["tutorial-torchgan", "tutorial-ours", "tutorial-ours+cl",
                                                 "sagan_celeba_64"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--step-channels", type=int, help="width for every net (default: 32 for the "
                   "tutorial nets, the config's for presets)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, help="TF32 on CUDA (default: on, as in "
                   "examples/celeba.py)")
    p.add_argument("--out", type=Path)
    p.add_argument("--profile", type=int, default=0, metavar="ROWS",
                   help="also print each net's ROWS most expensive operators (torch.profiler, one iteration)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    cuda = cuda_settings(device, tf32=args.tf32)  # before the ceiling: the same precision as the nets
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "torchgan_sagan_throughput"
    ceiling = matmul_gflops(device)
    print(f"# Trainer throughput, batch {args.batch}, {machine_description(device)}; "
          f"fp32 matmul ceiling {ceiling:.0f} GFLOP/s" + (f", {cuda}" if cuda else ""))

    trainers, first_step = {}, {}
    for spec in args.nets:
        torch.manual_seed(0)
        trainers[spec] = build(spec, args.batch, args.step_channels, device, workdir)
        start = time.perf_counter()
        trainers[spec][1]()  # warm-up; compiles where asked
        first_step[spec] = time.perf_counter() - start
    flops = {spec: count_flops(*pair) for spec, pair in trainers.items()}
    useful = {spec: count_flops(*pair, explicit_attention=True) for spec, pair in trainers.items()}
    # Peak memory of one training iteration beyond the nets and optimizer state (CUDA only).
    peaks = {spec: peak_memory(step, device) if device.type == "cuda" else None
             for spec, (_, step) in trainers.items()}
    times = interleaved_times({spec: step for spec, (_, step) in trainers.items()}, args.iters, device)

    base = times.get("tutorial-torchgan")
    rows, table = [], []
    for spec in args.nets:
        t = times[spec]
        gflops, useful_gflops = flops[spec] / t / 1e9, useful[spec] / t / 1e9
        row = {"net": spec, "seconds_per_iter": t, "images_per_s": args.batch / t,
               "gflop_per_iter": flops[spec] / 1e9, "useful_gflop_per_iter": useful[spec] / 1e9,
               "gflops": gflops, "useful_gflops": useful_gflops, "share_of_matmul_ceiling": gflops / ceiling,
               "first_step_s": first_step[spec], "peak_memory_bytes": peaks[spec]}
        if base:
            row["speedup_vs_tutorial_torchgan"] = base / t
        rows.append(row)
        table.append([spec, f"{t * 1e3:.0f}", f"{args.batch / t:.1f}",
                      f"{row['speedup_vs_tutorial_torchgan']:.2f}x" if base else "-",
                      f"{flops[spec] / 1e9:.1f} / {useful[spec] / 1e9:.1f}",
                      f"{gflops:.0f} / {useful_gflops:.0f}", f"{100 * gflops / ceiling:.0f}%",
                      f"{first_step[spec]:.1f}", "-" if peaks[spec] is None else f"{peaks[spec] / 2**20:.0f}"])
    print(markdown_table(["net", "ms/iter", "images/s", "vs tutorial-torchgan", "GFLOP/iter executed / useful",
                          "GFLOP/s executed / useful", "executed, of matmul ceiling", "first step (s)",
                          "peak memory (MiB)"], table))
    for spec, (_, step) in trainers.items() if args.profile else ():
        print(f"## {spec}: operators of one iteration\n{profile_table(step, device, args.profile)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": machine_description(device), "batch": args.batch,
                                        "matmul_gflops": ceiling, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
