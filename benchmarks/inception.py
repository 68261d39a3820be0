"""The standard scores' Inception pass: torch-fidelity's network as it ships against the
package's (BatchNorm folded into the convolutions, channels-last), on the same images.

Both take the same uint8 images (``--size`` pixels, resized to 299x299 inside the
network, as for FID) in batches of ``--batch``; calls alternate round by round and the
median of ``--repeats`` rounds is reported as images per second, with the ratio and the
largest relative difference between their pool features. Without ``--weights`` both
use the tests' stand-in weights file (the same architecture, random values: it costs
what the real file does).

    python benchmarks/inception.py
    python benchmarks/inception.py --weights weights-inception-2015-12-05-6726825d.pth --device cuda --batch 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import interleaved_times, machine_description, markdown_table, pick_device  # noqa: E402

from torchgan_sagan.metrics.inception import as_rgb_bytes  # noqa: E402
from torchgan_sagan.metrics.standard import POOL, inception_extractor  # noqa: E402

THEIRS = "torch-fidelity's"


def torch_fidelitys(weights: Path, device: torch.device) -> torch.nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", [POOL], feature_extractor_weights_path=str(weights))
    return net.to(device).eval()


def standin_weights(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from standin_inception import write_standin_weights

    return write_standin_weights(folder / "standin-inception.pth")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, help="Inception weights file (default: a stand-in)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--size", type=int, default=32, help="side of the images before the network's resize")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = p.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        p.error(f"no weights file at {args.weights}")
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or standin_weights(Path(tmp))
        nets = {THEIRS: torch_fidelitys(weights, device), "ours": inception_extractor(weights, device)}
    images = as_rgb_bytes(torch.rand(args.batch, 3, args.size, args.size,
                                     generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    with torch.no_grad():
        features = {name: net(images)[0] for name, net in nets.items()}  # also the warm-up
        times = interleaved_times({name: (lambda net=net: net(images)) for name, net in nets.items()},
                                  args.repeats, device)
    theirs, ours = features[THEIRS], features["ours"]
    difference = float(((ours - theirs).abs().max() / theirs.abs().max()).item())
    rate = {name: args.batch / t for name, t in times.items()}
    print(f"{machine_description(device)}; {args.batch} images of {args.size}x{args.size} a call, "
          f"median of {args.repeats}")
    print(markdown_table(["Inception", "images/s", "vs torch-fidelity's"],
                         [[name, f"{r:.2f}", f"{r / rate[THEIRS]:.2f}x"] for name, r in rate.items()]))
    print(f"largest pool-feature difference, relative to the largest feature: {difference:.1e}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": machine_description(device), "batch": args.batch,
                                        "size": args.size, "images_per_s": rate, "difference": difference},
                                       indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
