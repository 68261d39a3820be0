"""What the attention layers add to a training step: each net with and without them.

Every spec trains through ``torchgan_sagan.train_step`` (torchgan's ``train_iter``: one
D step and one G step) on one fixed batch of the config's own size; the specs run
interleaved round by round in one process, after warm-up, so that machine noise hits
them alike. Reported: milliseconds per iteration (median) and, for each spec with
attention, what its attention adds over the same spec with ``+noattn`` (no attention
layer in G or D: ``g_attn_resolutions=()`` and ``d_attn_resolutions=()``): the median
over rounds of the ratio of the two iterations of one round, with its quartiles (on a
shared machine the load changes between rounds; within a round it hits both alike).

    python benchmarks/attention_cost.py                       # sagan_faces_32, the main job's preset
    python benchmarks/attention_cost.py --specs sagan_32 sagan_32+unfused --step-channels 16 --threads 1
    python benchmarks/attention_cost.py --specs sagan_faces_32 sagan_faces_32+fused sagan_faces_32+unfused

``+fused`` / ``+unfused`` force the fused kernel or the explicit map (the default is
``auto``). Target (docs/performance.md): the attention of ``sagan_faces_32`` adds at most
50% to its step on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import interleaved_samples, machine_description, markdown_table, pick_device  # noqa: E402

from torchgan_sagan import get_config, list_configs, make_trainer, train_step  # noqa: E402
from torchgan_sagan.recipe.cli import parse_spec  # noqa: E402


def without_attention(spec: str) -> str:
    return spec if "noattn" in spec.split("+") else spec + "+noattn"


def build(spec: str, step_channels, device: torch.device, workdir: Path):
    """A step function training ``spec`` on one fixed batch, and the config."""
    try:
        name, overrides = parse_spec(spec, list_configs())
    except ValueError as err:
        raise SystemExit(f"attention_cost.py: error: {err}") from err
    if step_channels:
        overrides["step_channels"] = step_channels
    cfg = get_config(name, **overrides)
    torch.manual_seed(0)
    trainer = make_trainer(cfg, out=workdir / spec, device=device, sample_size=4)
    images = torch.rand(cfg.batch_size, cfg.image_channels, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    labels = torch.randint(0, cfg.num_classes, (cfg.batch_size,), device=device) if cfg.num_classes else None
    return (lambda: train_step(trainer, images, labels)), cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Step time of nets with and without their attention layers.")
    p.add_argument("--specs", nargs="+", default=["sagan_faces_32"],
                   help="config names with +tags; each also runs with +noattn")
    p.add_argument("--step-channels", type=int, help="override every spec's step_channels")
    p.add_argument("--repeats", type=int, default=30, help="timed iterations per spec")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--workdir", type=Path, default=Path("runs/attention_cost"))
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    specs = list(dict.fromkeys(s for spec in args.specs for s in (spec, without_attention(spec))))
    steps = {}
    for spec in specs:
        steps[spec], _ = build(spec, args.step_channels, device, args.workdir)
        for _ in range(args.warmup):
            steps[spec]()
    samples = interleaved_samples(steps, args.repeats, device)
    print(f"# training step (train_iter), {machine_description(device)}, {torch.get_num_threads()} threads, "
          f"{args.repeats} rounds")
    rows, table = [], []
    for spec in specs:
        base = without_attention(spec)
        ms = statistics.median(samples[spec]) * 1e3
        row = {"spec": spec, "ms": ms}
        added = "-"
        if base != spec:
            ratios = sorted(t / t0 - 1 for t, t0 in zip(samples[spec], samples[base]))
            q1, median, q3 = statistics.quantiles(ratios, n=4)
            row.update(attention_adds=median, attention_adds_quartiles=[q1, q3])
            added = f"+{median:.0%} ({q1:+.0%} .. {q3:+.0%})"
        rows.append(row)
        table.append([spec, f"{ms:.1f}", added])
    print(markdown_table(["spec", "ms / iteration", "attention adds (quartiles)"], table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": machine_description(device), "threads": torch.get_num_threads(),
                                        "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
