"""Self-attention layer: ours against ``torchgan.layers.SelfAttention2d``.

Measures one forward + backward pass (input of shape (B, C, H, H), loss = sum):

* time: median over ``--repeats`` runs; the implementations alternate within one
  process so that machine noise hits them alike, and speed is reported as a ratio;
* peak memory: each (implementation, size) runs in a fresh subprocess. After a small
  warm-up pass has initialized the libraries, the kernel's high-water mark of the
  resident set is reset (``/proc/self/clear_refs``, Linux) and the peak is how far
  it rose above the resident set during the pass. Large tensors are allocated with
  mmap and returned on free, so this follows the tensors that are alive at once.

Implementations: ``torchgan`` (torchgan 0.1.0's layer), ``ours`` (this package's
layer in torchgan's layout: the same projections, the same FLOPs, a fused kernel),
``ours-official`` (the paper's layout: value at C/2, 2x2-pooled keys).

    python benchmarks/attention.py                      # C 64,128 x H 16,32,64, B 16
    python benchmarks/attention.py --sizes 128 --impls ours ours-official
    python benchmarks/attention.py --out benchmarks/results/attention.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

IMPLS = ("torchgan", "ours", "ours-official")


def build(impl: str, channels: int) -> torch.nn.Module:
    if impl == "torchgan":
        from torchgan.layers import SelfAttention2d

        layer = SelfAttention2d(channels)
    else:
        from torchgan_sagan import SelfAttention2d

        layout = "official" if impl == "ours-official" else "torchgan"
        layer = SelfAttention2d(channels, layout=layout)
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    return layer


def step(layer: torch.nn.Module, x: torch.Tensor) -> None:
    layer.zero_grad(set_to_none=True)
    x.grad = None
    layer(x).sum().backward()


def _proc_status_bytes(key: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) * 1024


def child_peak_memory(impl: str, channels: int, size: int, batch: int) -> int:
    torch.manual_seed(0)
    step(build(impl, channels), torch.randn(2, channels, 8, 8, requires_grad=True))
    layer = build(impl, channels)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    before = _proc_status_bytes("VmRSS")
    step(layer, x)
    return _proc_status_bytes("VmHWM") - before


def peak_memory(impl: str, channels: int, size: int, batch: int) -> int:
    cmd = [sys.executable, __file__, "--child", impl, str(channels), str(size), str(batch)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} C={channels} H={size} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def times(impls, channels: int, size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    layers = {impl: build(impl, channels) for impl in impls}
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    for layer in layers.values():
        step(layer, x)  # warm-up
    samples = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl, layer in layers.items():
            start = time.perf_counter()
            step(layer, x)
            samples[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(s) for impl, s in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        impl, c, h, b = args.child
        print(child_peak_memory(impl, int(c), int(h), int(b)))
        return 0

    print(
        f"# attention fwd+bwd, batch {args.batch}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    rows = []
    header = "| C | HxW | impl | time (ms) | peak mem (MiB) | speed vs torchgan | mem vs torchgan |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for c in args.channels:
        for h in args.sizes:
            t = times(args.impls, c, h, args.batch, args.repeats)
            mem = {impl: peak_memory(impl, c, h, args.batch) for impl in args.impls}
            for impl in args.impls:
                row = {
                    "channels": c,
                    "size": h,
                    "batch": args.batch,
                    "impl": impl,
                    "time_s": t[impl],
                    "peak_bytes": mem[impl],
                }
                if "torchgan" in t:
                    row["speedup_vs_torchgan"] = t["torchgan"] / t[impl]
                    row["memory_ratio_vs_torchgan"] = mem[impl] / max(mem["torchgan"], 1)
                rows.append(row)
                speed, ratio = "-", "-"
                if "torchgan" in t:
                    speed = f"{row['speedup_vs_torchgan']:.2f}x"
                    ratio = f"{row['memory_ratio_vs_torchgan']:.3f}"
                print(
                    f"| {c} | {h}x{h} | {impl} | {t[impl] * 1e3:.1f} | "
                    f"{mem[impl] / 2**20:.1f} | {speed} | {ratio} |",
                    flush=True,
                )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
