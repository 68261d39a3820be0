"""Score a trained run against real images: ``python -m torchgan_sagan.evaluate RUN --real DATA``.

    python -m torchgan_sagan.evaluate runs/celeba --real ~/data/celeba     # FID-50k, KID, IS, precision/recall
    python -m torchgan_sagan.evaluate runs/celeba --real ~/data/celeba --num-samples 10000 --inception-weights FILE
    python -m torchgan_sagan.evaluate runs/digits --real digits            # digit-classifier FID/KID, coverage
    python -m torchgan_sagan.evaluate runs/cond --real ~/data/train        # also coverage per class (subfolders)
    python -m torchgan_sagan.evaluate runs/sagan_faces_32 --real faces --no-inception   # memorization only

``--real`` is ``digits`` (scikit-learn's, embedded), ``faces`` (scikit-image's LFW
faces, embedded) or a folder of images. Scores, on ``--num-samples`` seeded samples
(default 50,000, the papers' protocol: FID-50k):

- for ``faces`` and folders, the standard scores in Inception-v3 features
  (:mod:`torchgan_sagan.metrics.standard`, torch-fidelity's code): FID, KID, Inception
  Score, precision/recall and density/coverage, against up to ``--max-real`` real
  images (spread evenly over the folder's sorted files) whose features are computed once
  and cached. For a class-conditional run and a labelled folder (class subfolders, or
  ``--labels FILE``), each class's coverage by the run's class names. The weights are torch-fidelity's, fetched once into the
  package's cache folder, or ``--inception-weights FILE``; without either and without
  a connection, the error names the file and its address. ``--no-inception`` skips them
  (and draws only the memorization check's samples). Of the samples, only their
  features are kept (12 KB each; an RGB 128x128 image in float32 is 196 KB);
- for ``digits``, FID and KID in the digit classifier's features, class coverage (and
  for a conditional generator class accuracy, and each class's coverage by the run's
  class names);
- the memorization check on the first 1,000 samples: each one's nearest real image in
  pixel space, against the real images' distances to each other
  (:mod:`torchgan_sagan.metrics.memorization`).

Writes ``--out`` (default ``RUN/evaluation.json``) and ``evaluation_nearest.png`` beside it
(samples over their nearest real images), and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torchvision.utils import save_image

from .recipe.cli import CommandError, command_parser, crop_value, parse_device, require_at_least, run_command
from .data import ImageFiles, embedded_digits, embedded_faces, find_images, folder_transform
from .data.folders import evenly_spaced, resolve_crop
from .data.labels import class_subfolders, labelled_images
from .metrics.coverage import coverage_summary
from .metrics.inception import inception_weights
from .metrics.standard import protocol_name, standard_scores
from .metrics.memorization import match_training_images, memorization_report
from .metrics.scores import digit_classifier, digit_scores
from .trainer.run_folder import load_generator
from .metrics.sampling import GeneratedBatches, generate, sample_labels
from .visualize import nearest_grid

__all__ = ["build_parser", "class_names", "folder_classes", "real_images", "evaluate_generator", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("evaluate", "Score a trained torchgan_sagan run against real images.",
                       "results file (default: RUN/evaluation.json)",
                       samples=(PAPERS_SAMPLES, "generated samples to score (50,000: the papers' FID-50k)"), seed=12345)
    p.add_argument("--real", required=True, help="digits, faces, or a folder of images")
    p.add_argument("--max-real", type=int, default=5000, help="real images to read from a folder at most "
                   "(spread evenly over its sorted files)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="classes of --real's images for a conditional run's "
                   "per-class coverage: CSV rows file,class or a JSON object (default: its class subfolders)")
    p.add_argument("--crop", type=crop_value, help="center crop of folder images before resizing: pixels, 'square' "
                   "or 0 (none); default: 160 for CelebA's img_align_celeba, 'square' for other folders")
    p.add_argument("--inception-weights", type=Path, metavar="FILE", help="torch-fidelity's Inception weights "
                   "file (default: the package's cached copy, fetched once)")
    p.add_argument("--no-inception", action="store_true", help="skip the Inception scores (FID, KID, IS, "
                   "precision/recall) of faces and folders")
    return p


#: Samples of the papers' protocol (FID-50k: SAGAN's 18.65 on ImageNet 128, StudioGAN's tables).
PAPERS_SAMPLES = 50_000
#: Samples the memorization check compares with the real images.
MEMORIZATION_SAMPLES = 1000


def real_folder(name: str) -> Path:
    """``--real``'s folder; a one-line error when it is neither embedded data nor a folder."""
    folder = Path(name).expanduser()
    if not folder.exists():
        raise CommandError(f"--real {name!r} is neither digits, faces nor an existing folder")
    return folder


def class_names(generator) -> List[str]:
    """A conditional generator's class names as its run recorded them (the indices when
    it recorded none); ``[]`` for an unconditional one."""
    names = list(getattr(getattr(generator, "config", None), "class_names", None) or ())
    return names or [str(i) for i in range(getattr(generator, "num_classes", 0) or 0)]


def folder_classes(folder: Path, generator, labels_file: Optional[Path] = None, say=print):
    """``(files, labels)`` of a folder for a conditional ``generator``: the labels in the
    run's class indices (matched by name; -1 for a class the run lacks), or ``None`` when
    the folder is not labelled (said in a line). ``labels_file``: as ``--labels``."""
    if not generator.num_classes and labels_file is not None:
        raise CommandError("--labels: this run is unconditional; per-class coverage needs a class-conditional run")
    files = find_images(folder)  # listed once: a folder of CelebA's size takes seconds
    if not generator.num_classes:
        return files, None
    if labels_file is None and class_subfolders(folder, files) is None:
        say(f"Per-class coverage skipped: {folder} has images outside class subfolders (give --labels FILE).")
        return files, None
    found = labelled_images(folder, labels_file, files)  # a bad labels file: one line, through run_command
    names = class_names(generator)
    index = {n: i for i, n in enumerate(names)}
    if not set(found.classes) & set(index):
        say(f"Per-class coverage skipped: none of the folder's classes ({', '.join(found.classes[:5])}) is one of "
            f"the run's ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}).")
        return found.files, None
    return found.files, torch.tensor([index.get(found.classes[c], -1) for c in found.labels])


def real_images(name: str, generator, *, max_real: int = 5000, crop: Optional[Union[int, str]] = None,
                labels_file: Optional[Path] = None, say=print):
    """``(images, labels)`` of ``digits``, ``faces`` or a folder, at the generator's size
    and channels; labels are the digits' classes, a labelled folder's classes for a
    conditional generator (:func:`folder_classes`), else ``None``. ``crop``: as
    ``--crop``; ``None``: the folder's default (:func:`~torchgan_sagan.data.folders.default_crop`).
    A folder gives at most ``max_real`` images, spread evenly over its sorted files."""
    size, channels = generator.out_size, generator.out_channels
    if name == "digits":
        images, labels = embedded_digits(size).tensors
        return match_training_images(images, torch.empty(1, channels, size, size)), labels
    if name == "faces":
        images, _ = embedded_faces(size, flips=False).tensors
        return match_training_images(images, torch.empty(1, channels, size, size)), None
    folder = real_folder(name)
    files, labels = folder_classes(folder, generator, labels_file, say)
    keep = evenly_spaced(range(len(files)), max_real)
    files, labels = [files[i] for i in keep], None if labels is None else labels[keep]
    crop = resolve_crop(folder, crop)
    dataset = ImageFiles(files, folder_transform(size, crop=crop, channels=channels))
    from tqdm import tqdm

    bar = tqdm(range(len(dataset)), desc="reading", unit="image")
    try:
        return torch.stack([dataset[i][0] for i in bar]), labels
    except ValueError as err:  # every image failed: undecodable, or smaller than the crop
        raise CommandError(f"{err} from {folder} with --crop {crop or 0}: pass a smaller --crop, --crop square or "
                           f"--crop 0") from None
    finally:
        bar.close()  # before the error is said


def evaluate_generator(generator, real: torch.Tensor, labels: Optional[torch.Tensor], *, kind: str,
                       num_samples: int, seed: int, inception_weights: Optional[Path] = None,
                       device=None, batch_size: int = 250, cache_dir: Optional[Path] = None,
                       names: Optional[Sequence[str]] = None) -> Tuple[Dict, torch.Tensor]:
    """The scores of :mod:`torchgan_sagan.evaluate` for ``generator`` against ``real``
    (``kind``: ``"digits"`` or anything else; ``inception_weights``: the file for the
    standard scores, ``None`` to skip them), and the generated samples they scored.
    ``names``: a conditional generator's class names; with ``labels`` they add each
    class's coverage (``per_class``). The samples returned are the first
    :data:`MEMORIZATION_SAMPLES`: the Inception scores keep only features, and without
    them no more are drawn."""
    if kind != "digits" and inception_weights is None:  # only the memorization check uses samples
        num_samples = min(num_samples, MEMORIZATION_SAMPLES)
    result: Dict = {"samples": num_samples, "real_images": len(real)}
    asked = sample_labels(generator, num_samples)  # the class each sample was drawn for (None: unconditional)
    if kind == "digits":
        fake = generate(generator, num_samples, seed=seed, device=device, batch_size=batch_size,
                        progress=num_samples > batch_size)
        classifier = digit_classifier()
        result["features"] = f"digit classifier (test accuracy {classifier.test_accuracy:.4f})"
        result.update(digit_scores(fake, real, labels, classifier, asked, names))
    elif inception_weights is not None:
        # Features as the samples come: the images themselves are kept for the memorization check only.
        samples = GeneratedBatches(generator, num_samples, seed=seed, device=device, batch_size=batch_size,
                                   keep=MEMORIZATION_SAMPLES)
        result["features"] = f"Inception-v3 ({inception_weights}), torch-fidelity"
        classes = (labels, asked, names) if names and labels is not None and asked is not None else None
        result.update(standard_scores(samples, real, weights_path=inception_weights, device=device,
                                      cache_dir=cache_dir, progress=True, classes=classes))
        fake = samples.kept
    else:
        result["features"] = None
        fake = generate(generator, num_samples, seed=seed, device=device, batch_size=batch_size)
    fake = fake[:MEMORIZATION_SAMPLES]
    result["memorization"] = memorization_report(fake, real)
    return result, fake


def _table(result: Dict) -> str:
    n = result["samples"]
    if result["features"] is None:
        protocol = "for the memorization check"
    else:
        protocol = "the papers' protocol" if n == PAPERS_SAMPLES else f"papers use {PAPERS_SAMPLES:,}: --num-samples"
    rows = [("samples / real images", f"{n:,} / {result['real_images']:,} ({protocol})")]
    if result.get("fid") is not None:
        rows += [(protocol_name("FID", n), f"{result['fid']:.3f}"),
                 ("KID", f"{result['kid']['mean']:.4f} ± {result['kid']['std']:.4f}")]
        if "inception_score" in result:
            rows += [("Inception Score", f"{result['inception_score']['mean']:.3f} ± "
                                         f"{result['inception_score']['std']:.3f}"),
                     ("precision / recall", f"{result['precision']:.3f} / {result['recall']:.3f}"),
                     ("density / coverage", f"{result['density']:.3f} / {result['coverage']:.3f}"),
                     ("real features", "from the cache" if result["reference_cached"] else "computed, now cached")]
        rows.append(("features", result["features"]))
    else:
        rows.append(("Inception scores", "skipped (--no-inception)"))
    if "classes_hit" in result:
        rows += [("classes hit", str(result["classes_hit"])), ("KL(generated || real)", f"{result['kl']:.3f}")]
    if "class_accuracy" in result:
        rows.append(("class accuracy", f"{result['class_accuracy']:.3f}"))
    if "per_class" in result:
        rows.append(("coverage by class", coverage_summary(result["per_class"])))
    m = result["memorization"]
    rows += [("memorization check", f"the first {min(n, MEMORIZATION_SAMPLES):,} samples"),
             ("nearest real image, samples (median)", f"{m['sample_to_train']['median']:.3f}"),
             ("nearest other real image, real (median)", f"{m['train_to_train']['median']:.3f}"),
             ("ratio (≈1 or more: new images; ≪1: copies)", f"{m['median_ratio']:.2f}"),
             ("near copies", f"{100 * m['near_copies']:.1f}% of samples"),
             ("spread ratio (≈1: varied; ≪1: collapsed)", f"{m['spread_ratio']:.2f}"),
             ("verdict", m["verdict"])]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace) -> Dict:
    require_at_least(args, 1, "num", "max_real", "batch_size")
    if args.num < 2:
        raise CommandError("--num-samples must be at least 2 (the scores compare samples with each other)")
    if args.real not in ("digits", "faces"):
        real_folder(args.real)  # checked before the weights are fetched
    weights = None
    if args.real != "digits" and not args.no_inception:  # before any work: a missing file is said at once
        weights = inception_weights(args.inception_weights)
    device = parse_device(args.device)
    generator = load_generator(args.run, device=device, trust_checkpoint=args.trust_checkpoint)
    real, labels = real_images(args.real, generator, max_real=args.max_real, crop=args.crop,
                               labels_file=args.labels)
    kind = "digits" if args.real == "digits" else "images"
    result, fake = evaluate_generator(generator, real, labels, kind=kind, num_samples=args.num, seed=args.seed,
                                      inception_weights=weights, device=device, batch_size=args.batch_size,
                                      names=class_names(generator))
    out = args.out or (args.run if args.run.is_dir() else args.run.parent) / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    nearest = out.with_name(f"{out.stem}_nearest.png")  # RUN/nearest.png is the training's own
    save_image(nearest_grid(fake, real, result["memorization"]["indices"]), nearest)
    result["memorization"]["indices"] = result["memorization"]["indices"][:100]
    out.write_text(json.dumps({"run": str(args.run), "real": args.real, "seed": args.seed, **result}, indent=2))
    print(_table(result))
    print(f"Wrote {out} and {nearest} (samples above, their nearest real images below)")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("evaluate", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
