"""What the attention layers add to a training step: each net with and without them.

Every spec trains through ``torchgan_sagan.train_step`` (torchgan's ``train_iter``: one
D step and one G step) on one fixed batch of the config's own size; the specs run
interleaved round by round in one process, after warm-up, so that machine noise hits
them alike. Reported: milliseconds per iteration (median) and, for each spec with
attention, what its attention adds over the same spec with ``+noattn`` (no attention
layer in G or D: ``g_attn_resolutions=()`` and ``d_attn_resolutions=()``): the median
over rounds of the ratio of the two iterations of one round, with its quartiles (on a
shared machine the load changes between rounds; within a round it hits both alike).
With ``--runs N`` the whole measurement runs N times, each in a new process, and the
table gives each process's figure and their median: one process's figure differs from
the next by several points, more than its rounds differ among themselves.

    python benchmarks/attention_cost.py                       # sagan_faces_32, the main job's preset
    python benchmarks/attention_cost.py --runs 9              # the figure docs/performance.md gives
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
import subprocess
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


def _attention_adds(with_attention, without):
    """The median over rounds of the ratio of one round's two iterations, minus 1, and
    its quartiles."""
    ratios = sorted(t / t0 - 1 for t, t0 in zip(with_attention, without))
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return median, (q1, q3)


def measure(args) -> dict:
    """One measurement in this process: ``{"device", "threads", "rows"}``."""
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
    rows = []
    for spec in specs:
        row = {"spec": spec, "ms": statistics.median(samples[spec]) * 1e3}
        base = without_attention(spec)
        if base != spec:
            median, quartiles = _attention_adds(samples[spec], samples[base])
            row.update(attention_adds=median, attention_adds_quartiles=list(quartiles))
        rows.append(row)
    return {"device": machine_description(device), "threads": torch.get_num_threads(), "rows": rows}


def measure_in_fresh_processes(argv, runs: int, workdir: Path) -> dict:
    """``runs`` measurements, each in a new process: one process's figure differs from
    the next by more than its rounds differ among themselves (where its memory and
    threads happen to land), so the median over processes is the figure to quote."""
    results = []
    for i in range(runs):
        out = workdir / f"run{i}.json"
        # the flags given, then --runs and --out again: argparse keeps the last of each
        subprocess.run([sys.executable, __file__, *argv, "--runs", "1", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        results.append(json.loads(out.read_text()))
        print(f"run {i + 1} of {runs}: " + ", ".join(
            f"{row['spec']} +{row['attention_adds']:.0%}" for row in results[-1]["rows"] if "attention_adds" in row),
            flush=True)
    rows = []
    for i, row in enumerate(results[0]["rows"]):
        merged = {"spec": row["spec"], "ms": statistics.median(r["rows"][i]["ms"] for r in results)}
        if "attention_adds" in row:
            per_run = [r["rows"][i]["attention_adds"] for r in results]
            merged.update(attention_adds=statistics.median(per_run), attention_adds_runs=per_run)
        rows.append(merged)
    return {**results[0], "rows": rows, "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Step time of nets with and without their attention layers.")
    p.add_argument("--specs", nargs="+", default=["sagan_faces_32"],
                   help="config names with +tags; each also runs with +noattn")
    p.add_argument("--step-channels", type=int, help="override every spec's step_channels")
    p.add_argument("--repeats", type=int, default=100, help="timed rounds (one iteration of every spec each)")
    p.add_argument("--runs", type=int, default=1,
                   help="measure this many times, each in a new process; the table gives each run's figure and "
                        "their median")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--workdir", type=Path, default=Path("runs/attention_cost"))
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.repeats < 2 or args.runs < 1:
        p.error(f"--repeats must be at least 2 and --runs at least 1, got {args.repeats} and {args.runs}")
    if args.runs == 1:
        result = measure(args)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = measure_in_fresh_processes(argv, args.runs, args.workdir)
    print(f"# training step (train_iter), {result['device']}, {result['threads']} threads, {args.repeats} rounds"
          + (f", {args.runs} processes" if args.runs > 1 else ""))
    table = []
    for row in result["rows"]:
        added = "-"
        if "attention_adds_runs" in row:
            added = f"+{row['attention_adds']:.0%} (runs: {', '.join(f'{r:+.0%}' for r in row['attention_adds_runs'])})"
        elif "attention_adds" in row:
            q1, q3 = row["attention_adds_quartiles"]
            added = f"+{row['attention_adds']:.0%} ({q1:+.0%} .. {q3:+.0%})"
        table.append([row["spec"], f"{row['ms']:.1f}", added])
    print(markdown_table(["spec", "ms / iteration", "attention adds (quartiles, or each process's)"], table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
