"""The moving average of G against G's trained weights, from the same noise.

For each run folder (trained with ``--ema``): 64 samples from the trained weights and 64
from the average, both in eval mode and from the same noise, side by side in one
picture; and for each, the per-pixel standard deviation across the samples (how varied
they are) and the memorization / collapse check against the training images::

    python examples/celeba.py --ema 0.999 --out runs/faces_ema999
    python examples/average_vs_trained.py runs/faces_ema999
    python examples/average_vs_trained.py runs/faces_ema999 runs/faces_diffaug --out runs/ema_faces.png

The training images are the embedded faces (``--real faces``), the digits, or a folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from torchgan_sagan.evaluate import real_images
from torchgan_sagan.metrics import memorization_report, noise
from torchgan_sagan.recipe.cli import CommandError
from torchgan_sagan.trainer import load_generator
from torchgan_sagan.visualize import side_by_side_figure

SAMPLES = 64


def draw(generator, z: torch.Tensor, *, average: bool) -> torch.Tensor:
    generator.eval()
    generator.use_ema = average
    labels = (torch.arange(len(z)) % generator.num_classes,) if getattr(generator, "num_classes", 0) else ()
    with torch.no_grad():
        return generator(z, *labels)


def compare(run: Path, generator, real: torch.Tensor, seed: int) -> tuple:
    if getattr(generator, "ema", None) is None:
        raise CommandError(f"{run} was trained without a moving average (--ema): nothing to compare")
    z = noise(SAMPLES, generator.encoding_dims, seed=seed)
    rows, panels = {}, []
    for name, average in (("trained weights", False), ("moving average", True)):
        images = draw(generator, z, average=average)
        report = memorization_report(images, real)
        rows[name] = {"spread": images.std(dim=0).mean().item(), "copy_ratio": report["median_ratio"],
                      "spread_ratio": report["spread_ratio"], "verdict": report["verdict"]}
        panels.append((f"{run.name}: {name}", images))
    rows["average / trained spread"] = rows["moving average"]["spread"] / rows["trained weights"]["spread"]
    return rows, panels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (or checkpoint files)")
    p.add_argument("--real", default="faces", help="digits, faces, or a folder of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="the picture (default: RUN/average_vs_trained.png of the first run)")
    args = p.parse_args(argv)
    out = args.out or args.runs[0] / "average_vs_trained.png"
    try:
        results, panels = {}, []
        for run in args.runs:
            generator = load_generator(run)
            real, _ = real_images(args.real, generator, max_real=1000)
            results[str(run)], run_panels = compare(run, generator, real, args.seed)
            panels += run_panels
    except (CommandError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for run, rows in results.items():
        print(f"{run}: average / trained spread {rows['average / trained spread']:.2f}")
        for name in ("trained weights", "moving average"):
            r = rows[name]
            print(f"  {name:16s} spread {r['spread']:.3f}  copy ratio {r['copy_ratio']:.2f}  "
                  f"spread ratio {r['spread_ratio']:.2f}  {r['verdict']}")
    side_by_side_figure(panels, out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(f"picture: {out}; numbers: {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
