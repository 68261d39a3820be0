"""Self-attention layer: ours against ``torchgan.layers.SelfAttention2d``.

One forward + backward pass on an input of shape (B, C, H, H), loss = sum:

* time: median over ``--repeats`` passes, the implementations interleaved round by
  round in one process so that machine noise hits them alike; reported as ratios;
* peak memory: the most tensor memory alive at once during the pass beyond what
  existed before it (CPU: replay of the profiler's allocation events; CUDA: the
  allocator's peak).

Implementations: ``torchgan`` (torchgan 0.1.0's layer), ``ours`` (this package's layer
in torchgan's layout: the same projections and parameters, fused kernel), and
``ours-official`` (the paper's layout that the SAGAN nets use: value at C/2, keys and
values pooled 2x2), both with the fused kernel; ``ours-explicit`` and
``ours-official-explicit`` build the map instead (``fused="off"``): where the two cross
on a CPU is what ``fused="auto"`` goes by (``--impls`` picks a subset). Sizes in ``--ours-only-sizes`` run without torchgan's layer, whose
N x N map would not fit (128x128 at batch 64: 64 GiB per map).

    python benchmarks/attention.py
    python benchmarks/attention.py --channels 64 --sizes 64 --batch 64 --device cuda
    python benchmarks/attention.py --out benchmarks/results/attention.json
    python benchmarks/attention.py --impls ours-official ours-official-explicit --channels 32 64 --sizes 8 16 32 --batch 20 --ours-only-sizes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import interleaved_times, machine_description, markdown_table, peak_memory, pick_device  # noqa: E402

IMPLS = ("torchgan", "ours", "ours-official", "ours-explicit", "ours-official-explicit")


def build(impl: str, channels: int, device: torch.device) -> torch.nn.Module:
    if impl == "torchgan":
        from torchgan.layers import SelfAttention2d

        layer = SelfAttention2d(channels)
    else:
        from torchgan_sagan import SelfAttention2d

        layer = SelfAttention2d(channels, layout="official" if "official" in impl else "torchgan",
                                fused="off" if impl.endswith("explicit") else "on")
    with torch.no_grad():
        layer.gamma.fill_(0.5)  # gamma starts at 0; let the attention path count
    return layer.to(device)


def step_fn(layer: torch.nn.Module, x: torch.Tensor):
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step


def measure(impls, channels: int, size: int, batch: int, repeats: int, device: torch.device):
    torch.manual_seed(0)
    x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
    steps = {impl: step_fn(build(impl, channels, device), x) for impl in impls}
    for step in steps.values():
        step()  # warm-up
    memory = {impl: peak_memory(step, device) for impl, step in steps.items()}
    times = interleaved_times(steps, repeats, device)
    return times, memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Self-attention: ours against torchgan's.")
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--ours-only-sizes", type=int, nargs="*", default=[128])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS[:3]))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    device = pick_device(args.device)

    print(f"# attention forward+backward, batch {args.batch}, {machine_description(device)}")
    rows, table = [], []
    ours_only = [i for i in args.impls if i != "torchgan"]
    plan = [(s, args.impls) for s in args.sizes] + [(s, ours_only) for s in args.ours_only_sizes]
    for c in args.channels:
        for size, impls in plan:
            times, memory = measure(impls, c, size, args.batch, args.repeats, device)
            for impl in impls:
                row = {"channels": c, "size": size, "batch": args.batch, "impl": impl,
                       "time_s": times[impl], "peak_bytes": memory[impl]}
                speed = mem = "-"
                if "torchgan" in times:
                    row["speedup_vs_torchgan"] = times["torchgan"] / times[impl]
                    row["memory_fraction_of_torchgan"] = memory[impl] / memory["torchgan"]
                    speed = f"{row['speedup_vs_torchgan']:.2f}x"
                    mem = f"{row['memory_fraction_of_torchgan']:.3f} (1/{1 / row['memory_fraction_of_torchgan']:.0f})"
                rows.append(row)
                table.append([c, f"{size}x{size}", impl, f"{times[impl] * 1e3:.1f}",
                              f"{memory[impl] / 2**20:.1f}", speed, mem])
                print(f"  C={c} {size}x{size} {impl}: {times[impl] * 1e3:.1f} ms, "
                      f"{memory[impl] / 2**20:.1f} MiB", file=sys.stderr, flush=True)
    print(markdown_table(["C", "HxW", "impl", "time (ms)", "peak memory (MiB)",
                          "speed vs torchgan", "memory vs torchgan"], table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": machine_description(device), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
