"""The same SAGAN with and without its attention layers, from the same noise, over training.

Both nets train from the same seed on the same batches in the same order; only the
attention layers differ (``+noattn``: ``g_attn_resolutions=()``, ``d_attn_resolutions=()``).
At a few points of training each draws 16 images from one fixed noise batch (eval mode),
and the picture shows them in two rows, with attention above and without below::

    python examples/attention_side_by_side.py                       # the embedded faces, the main job's recipe: ~8 min
    python examples/attention_side_by_side.py --data digits         # the digits of the loss comparison: ~6 min
    python examples/attention_side_by_side.py --data digits --seed 1 --out runs/side_by_side_digits_1

Faces: ``sagan_faces_32`` for 3000 iterations (the 300 epochs of ``examples/celeba.py``);
at the end each net's 64 samples get the memorization / collapse check against the
training images. Digits: ``sagan_32`` in grayscale at width 16, batch 64, 1200
iterations (``examples/compare_losses.py``'s settings), with the FID and class coverage of
1000 samples at every point. Writes ``side_by_side.png`` and ``side_by_side.json`` to
``--out``, and prints a line per point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

os.environ.setdefault("CONSOLE_LOGGING", "0")
os.environ.setdefault("TENSORBOARD_LOGGING", "0")

from torchgan_sagan import get_config, make_trainer, train_step  # noqa: E402
from torchgan_sagan.data import embedded_digits, embedded_faces  # noqa: E402
from torchgan_sagan.metrics import digit_classifier, evaluate, generate, memorization_report  # noqa: E402
from torchgan_sagan.recipe.cli import TAGS  # noqa: E402
from torchgan_sagan.visualize import rows_of_grids_figure  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_losses import batches  # noqa: E402  (the digits benchmark's shuffled stream)

SETTINGS = {
    "faces": dict(config="sagan_faces_32", overrides={}, iters=3000, points=(100, 300, 1000, 3000)),
    "digits": dict(config="sagan_32", overrides=dict(image_channels=1, step_channels=16, batch_size=64),
                   iters=1200, points=(100, 300, 600, 1200)),
}
NETS = {"with attention": {}, "without attention": TAGS["noattn"]}


def train(name: str, overrides, data: str, images, settings, points, seed: int, workdir: Path, score, log):
    cfg = get_config(settings["config"], **settings["overrides"], **overrides)
    torch.manual_seed(seed)
    trainer = make_trainer(cfg, out=workdir / name.replace(" ", "_"), device="cpu", sample_size=4)
    stream = batches(TensorDataset(images), cfg.batch_size, seed)
    cells, scores, seconds = [], [], 0.0
    for it in range(1, max(points) + 1):
        start = time.perf_counter()
        train_step(trainer, *next(stream))
        seconds += time.perf_counter() - start
        if it in points:
            samples = generate(trainer.generator, 16, seed=seed + 1000)  # the same noise for both nets
            cells.append((f"iteration {it}", samples))
            point = {"iteration": it, "train_seconds": seconds, **score(trainer.generator)}
            scores.append(point)
            log(f"{data} {name:17s} iteration {it:5d}  {seconds:6.1f} s  " +
                "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items()
                          if k not in ("iteration", "train_seconds")))
    return cells, scores, trainer.generator


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=sorted(SETTINGS), default="faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=int, nargs="+", help="iterations at which both nets draw (default: per --data)")
    p.add_argument("--out", type=Path, help="default: runs/side_by_side_<data>")
    args = p.parse_args(argv)
    settings = SETTINGS[args.data]
    points = sorted(set(args.points or settings["points"]))
    if points[0] < 1:
        print("error: --points must be positive iteration numbers", file=sys.stderr)
        return 2
    out = args.out or Path(f"runs/side_by_side_{args.data}")
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)

    if args.data == "faces":
        images = embedded_faces(32).tensors[0]

        def score(generator):
            return {}
    else:
        digits = embedded_digits(32)
        images, labels = digits.tensors
        classifier = digit_classifier()

        def score(generator):
            r = evaluate(generator, images, labels, classifier, 1000)
            return {"fid": r["fid"], "classes_hit": r["classes_hit"]}

    rows, results = [], {}
    for name, overrides in NETS.items():
        cells, scores, generator = train(name, overrides, args.data, images, settings, points, args.seed,
                                         out / "runs", score, log)
        rows.append((name, cells))
        results[name] = {"points": scores}
        if args.data == "faces":
            report = memorization_report(generate(generator, 64, seed=args.seed + 1000), images)
            results[name]["memorization"] = {k: report[k] for k in ("median_ratio", "spread_ratio", "verdict")}
            log(f"faces {name:17s} memorization: copy ratio {report['median_ratio']:.2f}, "
                f"spread ratio {report['spread_ratio']:.2f}: {report['verdict']}")
    rows_of_grids_figure(rows, out / "side_by_side.png")
    (out / "side_by_side.json").write_text(json.dumps({"data": args.data, "seed": args.seed, "results": results},
                                                      indent=2))
    log(f"picture: {out / 'side_by_side.png'}; numbers: {out / 'side_by_side.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
