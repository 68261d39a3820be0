"""Measured comparison: SAGAN with the hinge loss against torchgan's built-in losses.

    python examples/compare_losses.py                          # 10 digits, 3 seeds: ~35 min on 2 CPU cores
    python examples/compare_losses.py --scenario sevens-eights # the seed scenario: ~45 min
    python examples/compare_losses.py --quick                  # both, tiny: under 2 minutes
    python examples/compare_losses.py --variants hinge minimax --seeds 0 1
    python examples/compare_losses.py --variants hinge hinge+cl tutorial tutorial-ours
    python examples/compare_losses.py --combine runs/a runs/b --out runs/ab   # runs split across processes

Every variant trains the same SAGAN (config ``sagan_32``, grayscale, with the same seed,
iterations, batch and learning rates: Adam 4e-4 for G and D, the presets' rates)
on the handwritten digits that ship with scikit-learn, resized to 32x32, through
torchgan's ``Trainer`` (its ``train_iter``, so each loss runs its own torchgan
``train_ops``). Only the loss changes:

- ``hinge``: this package's hinge pair (the SAGAN paper's loss);
- ``least_squares``: torchgan's least-squares pair with this package's training steps
  (the DCGAN-style presets' default);
- ``minimax``, ``wasserstein`` (weight clipping), ``wasserstein_gp``: torchgan's losses;
- ``tutorial``: for reference, torchgan's SAGAN tutorial network as shipped (its own
  ``SelfAttention2d``, BatchNorm, tanh output), at 32x32, with the tutorial's recipe
  (Wasserstein loss with clipping, Adam 1e-4 / 4e-4, betas (0, 0.999));
- ``tutorial-ours``: the same network from this package (config ``sagan_tutorial_64``
  at 32x32, the same recipe but Adam 8e-4 for G), not in the default set
  (``examples/tutorial_ablation.py`` takes the two apart);
- ``cond``: class-conditional SAGAN with the hinge loss (config ``sagan_cond_digits_32``:
  conditional BatchNorm in G, projection D), not in the default set; its samples are
  asked for every class in equal shares, and the class accuracy (the share the digit
  classifier puts in the class asked for) is reported as well.

Any of ours takes ``+`` options that change settings of its config, e.g.
``hinge+cl`` (channels-last), ``tutorial-ours+dropin`` (torchgan's attention layout),
``hinge+ema+diffaug`` (moving average of G, DiffAugment), ``least_squares+noattn`` (no
attention layer), ``+gattn`` / ``+dattn`` (attention in one net only): ``EXTRA_TAGS`` and
``torchgan_sagan.recipe.cli.TAGS``. Does attention help (docs/results.md)::

    python examples/compare_losses.py --variants least_squares least_squares+noattn least_squares+gattn \
        least_squares+dattn least_squares+attn2 --equal-time --out runs/attention
    python examples/compare_losses.py --variants least_squares+resnet least_squares+resnet+noattn --equal-time \
        --out runs/attention_resnet

With ``--equal-time`` every variant is also scored at an equal wall-clock budget: the
training time (evaluations excluded) the first variant needs for ``--iters``
iterations. Faster variants train past ``--iters`` to reach it, slower ones are scored
where they reach it; seconds per iteration are measured in the same run.

Quality is measured offline (``torchgan_sagan.metrics``) at regular intervals: FID and
KID in the feature space of a small digit classifier, and class coverage (how many of
the 10 digits the samples hit, and the KL divergence of their class shares from the
real ones). Final numbers are mean ± std over the seeds. With a moving average of G
(``+ema``) the metrics are the average's, and the FID of G's own weights in the same
run is reported beside them (the average does not change training).

The seed scenario repeats the setting of the notebook this project grew from: only the
7s and 8s (353 images) at 64x64, where that notebook's training collapsed. For each
variant it reports whether both classes survive and how diverse the samples are.

Writes to ``--out``: ``results.md``, ``results.json``, ``fid_vs_iteration.png`` and a
sample grid per variant (``samples_<variant>.png``); the seed scenario writes
``sevens_eights.md``, ``sevens_eights.json`` and ``sevens_eights_<variant>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.data import DataLoader

# torchgan's console and TensorBoard logging are not used here; the harness reports itself.
os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

from torchvision.utils import save_image  # noqa: E402

from torchgan_sagan import get_config, make_trainer, train_step  # noqa: E402
from torchgan_sagan.recipe.cli import TAGS, parse_spec  # noqa: E402
from torchgan_sagan.data import embedded_digits  # noqa: E402
from torchgan_sagan.metrics import (  # noqa: E402
    class_coverage,
    digit_classifier,
    diversity,
    evaluate,
    fid,
    generate,
    mean_std,
)
from torchgan_sagan.models.torchgan_tutorial import tutorial_network_params  # noqa: E402
from torchgan_sagan.visualize import image_grid  # noqa: E402

VARIANTS = ("hinge", "minimax", "least_squares", "wasserstein", "wasserstein_gp", "tutorial")
BASES = VARIANTS + ("tutorial-ours", "cond")
#: ``+tag`` shorthands of this harness, beside the package's (``cl``, ``dropin``,
#: ``official``, ``unfused``, ``diffaug``, ...: :data:`torchgan_sagan.recipe.cli.TAGS`).
EXTRA_TAGS = {
    # Sized for runs of ~1200 G steps: a ~200-step memory, from step 200 on.
    "ema": {"ema_decay": 0.995, "ema_start": 200},
    # From the first step, with the decay warmed up (torchgan_sagan.models.ema.warmed_up_decay).
    "ema995": {"ema_decay": 0.995, "ema_start": 0},
    "ema999": {"ema_decay": 0.999, "ema_start": 0},
    "ema9999": {"ema_decay": 0.9999, "ema_start": 0},
    # G's learning rate: D's (the presets' default since it measured best), or the
    # paper's TTUR value.
    "glr4": {"g_lr": 4e-4},
    "glr1": {"g_lr": 1e-4},
    # Two D steps per G step (torchgan's ncritic: every iteration trains D, every
    # second one G too), as in WGAN-style recipes; the ResNet CIFAR preset has 5.
    "d2": {"ncritic": 2},
    # Where attention sits (the package's own +noattn takes it out of both nets): in G
    # only, in D only, at 8x8 instead of 16x16, at both 8x8 and 16x16.
    "gattn": {"d_attn_resolutions": ()},
    "dattn": {"g_attn_resolutions": ()},
    "attn8": {"g_attn_resolutions": (8,), "d_attn_resolutions": (8,)},
    "attn2": {"g_attn_resolutions": (8, 16), "d_attn_resolutions": (8, 16)},
}

FULL = dict(seeds=[0, 1, 2], iters=1200, eval_every=200, samples=1000, step_channels=16, batch=64,
            sevens_eights_iters=1500, sevens_eights_eval_every=500, sevens_eights_step_channels=16,
            sevens_eights_batch=32)
QUICK = dict(seeds=[0], iters=12, eval_every=6, samples=200, step_channels=8, batch=16,
             sevens_eights_iters=4, sevens_eights_eval_every=2, sevens_eights_step_channels=8,
             sevens_eights_batch=16)


def parse_variant(spec: str):
    """``"hinge+cl"`` -> ``("hinge", {"channels_last": True})``; ValueError naming the
    known bases and tags otherwise."""
    base, overrides = parse_spec(spec, BASES, extra_tags=EXTRA_TAGS)
    if base == "tutorial" and overrides:
        raise ValueError(f"{spec!r}: 'tutorial' is torchgan's own network and takes no options; "
                         "use 'tutorial-ours+...' for this package's version of it")
    return base, overrides


def build_config(variant: str, image_size: int, step_channels: int):
    base, overrides = parse_variant(variant)
    if base == "cond":
        if image_size != 32:
            raise ValueError("'cond' runs in the digits scenario only (all ten classes at 32x32)")
        return get_config("sagan_cond_digits_32", step_channels=step_channels, **overrides)
    if base in ("tutorial", "tutorial-ours"):
        # The tutorial's attention placement at this size: S/4 and S/2 in G, 4 and 8 in D.
        return get_config("sagan_tutorial_64", image_size=image_size, image_channels=1,
                          step_channels=step_channels, g_attn_resolutions=(image_size // 4, image_size // 2),
                          d_attn_resolutions=(4, 8), **overrides)
    return get_config("sagan_32" if image_size == 32 else "sagan_celeba_64",
                      image_channels=1, step_channels=step_channels, loss=base, **overrides)


def build_trainer(variant: str, image_size: int, step_channels: int, workdir: Path, device: str = "cpu"):
    cfg = build_config(variant, image_size, step_channels)
    params = None
    if variant == "tutorial":
        # The tutorial's own recipe: its learning rates (tutorial_network_params' defaults),
        # sagan_tutorial_64's encoding, betas and loss.
        params = tutorial_network_params(encoding_dims=cfg.encoding_dims, image_size=image_size, channels=1,
                                         step_channels=step_channels)
    return make_trainer(cfg, out=workdir, device=device, network_params=params)


def batches(dataset, batch: int, seed: int):
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def run_variant(variant, seed, dataset, classifier, settings, workdir: Path, log,
                budget: Optional[float] = None, build: Callable = build_trainer) -> Dict:
    """Train ``settings["iters"]`` iterations, evaluating every ``eval_every``; with a
    ``budget`` (seconds of training, evaluations excluded), also evaluate where the
    training time reaches it, training past ``iters`` when needed (up to 10x).
    ``build(variant, image_size, step_channels, workdir, device)`` makes the trainer."""
    torch.manual_seed(seed)
    trainer = build(variant, 32, settings["step_channels"], workdir, settings["device"])
    real_images, real_labels = dataset.tensors
    stream = batches(dataset, settings["batch"], seed)
    curve, at_budget, train_time, at_iters, it = [], None, 0.0, 0.0, 0

    def score(label: str) -> Dict:
        point = {"iteration": it, "train_seconds": train_time,
                 **evaluate(trainer.generator, real_images, real_labels, classifier, settings["samples"])}
        accuracy = f"  class acc. {point['class_accuracy']:.3f}" if "class_accuracy" in point else ""
        live = (f"  G's own weights: FID {point['fid_live']:.2f}, classes {point['classes_hit_live']}"
                if "fid_live" in point else "")
        log(f"  {variant:15s} seed {seed} {label} {it:5d}: FID {point['fid']:8.2f}  KID {point['kid']:.4f}  "
            f"classes {point['classes_hit']:2d}  KL {point['kl']:.3f}{accuracy}{live}")
        return point

    while it < settings["iters"] or (budget is not None and at_budget is None and it < 10 * settings["iters"]):
        it += 1
        start = time.perf_counter()
        train_step(trainer, *next(stream))
        train_time += time.perf_counter() - start
        if it == settings["iters"]:
            at_iters = train_time
        point = None
        if budget is not None and at_budget is None and train_time >= budget:
            point = at_budget = score("time ")
        if it <= settings["iters"] and (it % settings["eval_every"] == 0 or it == settings["iters"]):
            curve.append(point or score("iter "))
    return {"curve": curve, "final": curve[-1], "train_seconds": at_iters,
            "seconds_per_iteration": at_iters / settings["iters"],
            "at_budget": at_budget if budget is not None else curve[-1], "generator": trainer.generator}


def seed_scenario(variants, classifier, settings, workdir: Path, out: Path, log) -> Dict:
    skipped = [v for v in variants if parse_variant(v)[0] == "cond"]
    if skipped:
        log(f"  7s/8s: skipping {skipped}: the seed scenario is unconditional")
    variants = [v for v in variants if v not in skipped]
    data = embedded_digits(64, classes=[7, 8])
    real_images, real_labels = data.tensors
    real_diversity = diversity(real_images, classifier)
    results = {"images": len(data), "real_diversity": real_diversity, "variants": {}}

    def measure(generator) -> Dict:
        fake = generate(generator, settings["samples"], seed=12345)
        coverage = class_coverage(fake, classifier, real_labels)
        share7, share8 = coverage["histogram"][7], coverage["histogram"][8]
        return {"share_7": share7, "share_8": share8, "share_other": 1 - share7 - share8,
                "both_survive": share7 >= 0.1 and share8 >= 0.1,
                "diversity_ratio": diversity(fake, classifier) / real_diversity,
                "fid": fid(real_images, fake, classifier), "fake": fake}

    for variant in variants:
        torch.manual_seed(0)
        trainer = build_trainer(variant, 64, settings["sevens_eights_step_channels"], workdir / f"sevens_eights_{variant}",
                                settings["device"])
        stream = batches(data, settings["sevens_eights_batch"], 0)
        curve = []
        for it in range(1, settings["sevens_eights_iters"] + 1):
            train_step(trainer, *next(stream))
            if it % settings["sevens_eights_eval_every"] == 0 or it == settings["sevens_eights_iters"]:
                point = measure(trainer.generator)
                fake = point.pop("fake")
                curve.append({"iteration": it, **point})
                log(f"  7s/8s {variant:15s} iter {it:5d}: 7 {point['share_7']:.2f}  8 {point['share_8']:.2f}  "
                    f"other {point['share_other']:.2f}  diversity {point['diversity_ratio']:.2f}  "
                    f"FID {point['fid']:.1f}")
        save_image(image_grid(fake[:64], nrow=8), out / f"sevens_eights_{variant}.png")
        results["variants"][variant] = {**curve[-1], "curve": curve}
    return results


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, r in results.items():
        iters = r["curve"]["iteration"]
        mean, std = r["curve"]["fid_mean"], r["curve"]["fid_std"]
        ax.plot(iters, mean, label=variant, linewidth=2.5 if variant == "hinge" else 1.5)
        ax.fill_between(iters, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.15)
    ax.set_xlabel("iteration (one D and one G step)")
    ax.set_ylabel("FID (digit-classifier features)")
    ax.set_yscale("log")
    ax.set_title("SAGAN on sklearn digits 32x32: FID by loss (mean ± std over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(summary: Dict, path: Path) -> None:
    meta = summary["meta"]
    lines = [
        "# SAGAN loss comparison on sklearn digits (32x32)",
        "",
        f"Command: `{meta['command']}`. Date: {meta['date']}. Machine: {meta['machine']}. "
        f"torch {meta['torch']}. Digit classifier test accuracy: {meta['classifier_test_accuracy']:.4f}.",
        "",
        f"{meta['iters']} iterations (batch {meta['batch']}, step_channels {meta['step_channels']}), "
        f"seeds {meta['seeds']}; metrics on {meta['samples']} samples against all {meta['real_images']} "
        f"real digits. Mean ± std over seeds; lower FID/KID/KL is better, 10 classes is full coverage.",
        "",
        "| variant | FID | KID | classes hit | KL(gen ‖ real) | class accuracy | FID of G's own weights | "
        "classes hit, G's own weights | training s/run | s/iteration |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in summary["results"].items():
        f, k, c, kl = r["fid"], r["kid"], r["classes_hit"], r["kl"]
        acc = f"{r['class_accuracy']['mean']:.3f} ± {r['class_accuracy']['std']:.3f}" if "class_accuracy" in r else "-"
        live = f"{r['fid_live']['mean']:.2f} ± {r['fid_live']['std']:.2f}" if "fid_live" in r else "-"
        live_hit = f"{r['classes_hit_live']['mean']:.1f}" if "classes_hit_live" in r else "-"
        lines.append(f"| {variant} | {f['mean']:.2f} ± {f['std']:.2f} | {k['mean']:.4f} ± {k['std']:.4f} | "
                     f"{c['mean']:.1f} ± {c['std']:.1f} | {kl['mean']:.3f} ± {kl['std']:.3f} | "
                     f"{acc} | {live} | {live_hit} | "
                     f"{r['train_seconds']['mean']:.0f} | {r['seconds_per_iteration']['mean']:.3f} |")
    if meta.get("equal_time"):
        first = next(iter(summary["results"]))
        budget = summary["results"][first]["train_seconds"]["mean"]
        lines += ["", f"At an equal wall-clock budget: {budget:.1f} s of training, what {first} needs for "
                      f"{meta['iters']} iterations (evaluation time excluded; seconds per iteration measured "
                      f"in this run).", "",
                  "| variant | iterations in the budget | FID | KID | classes hit | KL(gen ‖ real) |",
                  "|---|---|---|---|---|---|"]
        for variant, r in summary["results"].items():
            b = r["at_budget"]
            lines.append(f"| {variant} | {b['iteration']['mean']:.0f} | {b['fid']['mean']:.2f} ± {b['fid']['std']:.2f} | "
                         f"{b['kid']['mean']:.4f} ± {b['kid']['std']:.4f} | {b['classes_hit']['mean']:.1f} | "
                         f"{b['kl']['mean']:.3f} ± {b['kl']['std']:.3f} |")
    path.write_text("\n".join(lines) + "\n")


def write_seed_markdown(summary: Dict, path: Path) -> None:
    meta, s78 = summary["meta"], summary["seed_scenario"]
    lines = [
        f"# Seed scenario: 7s and 8s only ({s78['images']} images) at 64x64",
        "",
        f"Command: `{meta['command']}`. Date: {meta['date']}. Machine: {meta['machine']}. torch {meta['torch']}.",
        f"{meta['sevens_eights_iters']} iterations (batch {meta['sevens_eights_batch']}, step_channels "
        f"{meta['sevens_eights_step_channels']}), seed 0; {meta['samples']} samples.",
        "",
        "Shares of generated samples classified as 7, 8 or another digit; a class survives with "
        "≥ 10% of the samples. Diversity: mean pairwise feature distance of the samples over "
        "that of the real images (1 = as diverse as the data, near 0 = collapse).",
        "",
        "| variant | iteration | 7 | 8 | other | both survive | diversity | FID |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in s78["variants"].items():
        for e in r["curve"]:
            lines.append(f"| {variant} | {e['iteration']} | {e['share_7']:.2f} | {e['share_8']:.2f} | "
                         f"{e['share_other']:.2f} | {'yes' if e['both_survive'] else 'no'} | "
                         f"{e['diversity_ratio']:.2f} | {e['fid']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Compare SAGAN losses on the embedded digits.")
    p.add_argument("--quick", action="store_true", help="tiny smoke run of both scenarios (under 2 minutes)")
    p.add_argument("--scenario", choices=["digits", "sevens-eights"], default="digits",
                   help="digits: all ten digits at 32x32 over seeds; sevens-eights: the seed scenario")
    p.add_argument("--out", type=Path, default=Path("runs/compare_losses"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS),
                   help=f"default: {' '.join(VARIANTS)}; also tutorial-ours and cond, and +tags on ours "
                        f"({', '.join('+' + t for t in sorted({**TAGS, **EXTRA_TAGS}))})")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (quick: 0)")
    p.add_argument("--iters", type=int, help="training iterations per run")
    p.add_argument("--device", default="cpu", help="where to train (cpu, cuda, ...); the metrics run on the CPU")
    p.add_argument("--equal-time", action="store_true", help="also score every variant at the training time "
                   "the first variant needs for --iters iterations (faster ones train longer)")
    p.add_argument("--combine", type=Path, nargs="+", metavar="DIR",
                   help="train nothing: merge the digits results of runs split across processes (their --out "
                        "folders, in order) into one table in --out; a variant in several keeps its first")
    args = p.parse_args(argv)
    if args.combine:
        summary = merge_results(args.combine, "compare_losses.py")
        if summary is None:
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(summary, indent=2))
        write_markdown(summary, args.out / "results.md")
        plot(summary["results"], args.out / "fid_vs_iteration.png")
        print(f"{len(summary['results'])} variants from {len(args.combine)} runs -> {args.out / 'results.md'}")
        return 0
    for spec in args.variants:
        try:
            parse_variant(spec)
        except ValueError as err:
            print(f"compare_losses.py: error: {err}", file=sys.stderr)
            return 2
    settings = dict(QUICK if args.quick else FULL, device=args.device)
    if args.seeds:
        settings["seeds"] = args.seeds
    if args.iters is not None:
        if args.iters < 1:
            print("compare_losses.py: error: --iters must be at least 1", file=sys.stderr)
            return 2
        settings["iters" if args.scenario == "digits" else "sevens_eights_iters"] = args.iters
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / "work"

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.time()
    classifier = digit_classifier(verbose=True)
    log(f"digit classifier: test accuracy {classifier.test_accuracy:.4f} on the held-out 25% of sklearn digits")
    command = " ".join(["python examples/compare_losses.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "equal_time": args.equal_time,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
            "classifier_test_accuracy": classifier.test_accuracy, **settings}
    if args.quick or args.scenario == "digits":
        summary = {"meta": dict(meta), "results": digits_scenario(args, settings, classifier, workdir, log)}
        summary["meta"]["real_images"] = len(embedded_digits(32))
        summary["meta"]["wall_seconds"] = time.time() - started
        (args.out / "results.json").write_text(json.dumps(summary, indent=2))
        write_markdown(summary, args.out / "results.md")
        plot(summary["results"], args.out / "fid_vs_iteration.png")
    if args.quick or args.scenario == "sevens-eights":
        log("seed scenario: 7s and 8s at 64x64")
        s78 = {"meta": dict(meta),
               "seed_scenario": seed_scenario(args.variants, classifier, settings, workdir, args.out, log)}
        s78["meta"]["wall_seconds"] = time.time() - started
        (args.out / "sevens_eights.json").write_text(json.dumps(s78, indent=2))
        write_seed_markdown(s78, args.out / "sevens_eights.md")
    log(f"done in {time.time() - started:.0f} s; results in {args.out}")
    return 0


def merge_results(folders: List[Path], script: str) -> Optional[Dict]:
    """One summary from the ``results.json`` of runs split across processes (same
    settings): their variants in order, a variant in several folders from the first,
    their commands joined. None, with a message, when a folder has no results."""
    missing = [str(f / "results.json") for f in folders if not (f / "results.json").is_file()]
    if missing:
        print(f"{script}: error: no results in {', '.join(missing)}; give the --out folders of "
              "finished or running runs", file=sys.stderr)
        return None
    parts = [json.loads((f / "results.json").read_text()) for f in folders]
    results: Dict[str, Dict] = {}
    for part in parts:
        for variant, r in part["results"].items():
            results.setdefault(variant, r)
    meta = dict(parts[0]["meta"], command=" ; ".join(part["meta"]["command"] for part in parts))
    return {"meta": meta, "results": results}


def summarize(runs: List[Dict]) -> Dict:
    """Mean ± std over the seeds' runs (:func:`run_variant` results) of one variant."""
    iters = [pt["iteration"] for pt in runs[0]["curve"]]
    fids = [[r["curve"][i]["fid"] for r in runs] for i in range(len(iters))]
    return {
        "fid": mean_std([r["final"]["fid"] for r in runs]),
        "kid": mean_std([r["final"]["kid"] for r in runs]),
        "classes_hit": mean_std([float(r["final"]["classes_hit"]) for r in runs]),
        "kl": mean_std([r["final"]["kl"] for r in runs]),
        **({key: mean_std([r["final"][key] for r in runs])
            for key in ("class_accuracy", "fid_live", "classes_hit_live") if key in runs[0]["final"]}),
        "train_seconds": mean_std([r["train_seconds"] for r in runs]),
        "seconds_per_iteration": mean_std([r["seconds_per_iteration"] for r in runs]),
        "at_budget": {key: mean_std([float(r["at_budget"][key]) for r in runs])
                      for key in ("fid", "kid", "classes_hit", "kl", "iteration", "train_seconds")},
        "curve": {"iteration": iters, "fid_mean": [statistics.fmean(f) for f in fids],
                  "fid_std": [statistics.stdev(f) if len(f) > 1 else 0.0 for f in fids],
                  "per_seed": [r["curve"] for r in runs]},
    }


def digits_scenario(args, settings, classifier, workdir: Path, log) -> Dict:
    dataset = embedded_digits(32)
    per_variant: Dict[str, Dict] = {}
    budget = None
    for variant in args.variants:
        runs = []
        for seed in settings["seeds"]:
            run = run_variant(variant, seed, dataset, classifier, settings, workdir / variant, log, budget)
            runs.append(run)
            if seed == settings["seeds"][0]:
                # Conditional: 100 samples, one class per column.
                count, nrow = (100, 10) if getattr(run["generator"], "num_classes", 0) else (64, 8)
                samples = generate(run["generator"], count, seed=12345)
                save_image(image_grid(samples, nrow=nrow), args.out / f"samples_{variant}.png")
        per_variant[variant] = summarize(runs)
        log(f"{variant}: FID {per_variant[variant]['fid']['mean']:.2f} ± {per_variant[variant]['fid']['std']:.2f}")
        if args.equal_time and budget is None:
            # The first variant's training time for its iterations is every other's budget.
            budget = per_variant[variant]["train_seconds"]["mean"]
            log(f"equal wall-clock budget: {budget:.1f} s of training ({variant}, {settings['iters']} iterations)")
    return per_variant


if __name__ == "__main__":
    sys.exit(main())
