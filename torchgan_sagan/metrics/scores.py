"""Offline quality metrics: FID, KID and class coverage in a digit classifier's feature
space (:mod:`torchgan_sagan.metrics.classifier`, trained on scikit-learn's digits, so
nothing is downloaded), fed to torchmetrics; Inception FID per epoch when weights are
present; and the summaries the comparison harness reports.

Each metric works standalone (:func:`fid`, :func:`kid`, :func:`class_coverage`,
:func:`evaluate`) and as a torchgan ``EvaluationMetric`` that the ``Trainer`` runs at
the end of every epoch (:class:`FID`, :class:`KID`, :class:`ClassCoverage`,
:class:`InceptionFID`).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchgan.metrics import EvaluationMetric

from ..files import register_checkpoint_class
from .classifier import DigitClassifier, digit_classifier
from .coverage import per_class_coverage
from .inception import as_rgb_bytes, inception_features, kid_scorer
from .sampling import chunks, generate, sample_labels
from .standard import protocol_name

__all__ = ["fid", "kid", "class_coverage", "class_accuracy", "digit_scores", "evaluate", "diversity",
           "mean_std", "FID", "KID", "ClassCoverage", "InceptionFID"]


class _Features(nn.Module):
    """The classifier's feature layer as the ``feature`` module torchmetrics expects."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, classifier: DigitClassifier) -> float:
    """Fréchet distance between real and fake images in the classifier's feature space."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Features(classifier.eval()))
    for batch in chunks(real):
        metric.update(batch, real=True)
    for batch in chunks(fake):
        metric.update(batch, real=False)
    return float(metric.compute())


@torch.no_grad()
def kid(real: torch.Tensor, fake: torch.Tensor, classifier: DigitClassifier, *,
        subsets: int = 50, subset_size: int = 500) -> Dict[str, float]:
    """Kernel inception distance in the classifier's feature space: ``{"mean", "std"}``.

    ``subset_size`` is capped at the smaller sample count.
    """
    metric = kid_scorer(_Features(classifier.eval()), subsets, min(subset_size, len(real), len(fake)))
    for batch in chunks(real):
        metric.update(batch, real=True)
    for batch in chunks(fake):
        metric.update(batch, real=False)
    mean, std = metric.compute()
    return {"mean": float(mean), "std": float(std)}


@torch.no_grad()
def class_coverage(images: torch.Tensor, classifier: DigitClassifier,
                   real_labels: Optional[torch.Tensor] = None, *, min_share: float = 0.01) -> Dict:
    """Which digit classes the images fall into, against the real label distribution.

    Returns ``histogram`` (share of images per class), ``classes_hit`` (classes with at
    least ``min_share`` of the images), ``kl`` = KL(generated || real) in nats (0 when
    the shares match; log(10) ≈ 2.30 when every image is one digit of ten equally common
    ones) and ``mean_confidence`` (mean top-class probability).
    """
    classifier.eval()
    probs = torch.cat([F.softmax(classifier(b), dim=1) for b in chunks(images)])
    counts = torch.bincount(probs.argmax(1), minlength=10).double()
    gen_share = counts / counts.sum()
    if real_labels is None:
        real_share = torch.full((10,), 0.1, dtype=torch.float64)
    else:
        real_share = torch.bincount(real_labels, minlength=10).double()
        real_share = real_share / real_share.sum()
    real_share = real_share.to(gen_share.device)
    support = gen_share > 0
    kl = float((gen_share[support] * (gen_share[support] / real_share[support].clamp_min(1e-12)).log()).sum())
    return {
        "histogram": gen_share.tolist(),
        "classes_hit": int((gen_share >= min_share).sum()),
        "kl": kl,
        "mean_confidence": float(probs.max(1).values.mean()),
    }


@torch.no_grad()
def class_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: DigitClassifier) -> float:
    """Share of ``images`` that ``classifier`` puts in the class in ``labels`` (the class
    each was generated for): how well a conditional generator obeys its labels."""
    classifier.eval()
    predicted = torch.cat([classifier(b).argmax(1) for b in chunks(images)])
    return float((predicted == labels).double().mean())


def digit_scores(fake: torch.Tensor, real_images: torch.Tensor, real_labels: Optional[torch.Tensor],
                 classifier: DigitClassifier, asked: Optional[torch.Tensor] = None,
                 names: Optional[Sequence[str]] = None) -> Dict:
    """FID, KID (``{"mean", "std"}``) and class coverage of generated digits against the
    real ones, and class accuracy when ``asked`` gives the class each was generated for;
    with ``names`` (the run's class names) and ``real_labels`` too, each class's coverage
    and density in the classifier's features (``per_class``, by name)."""
    coverage = class_coverage(fake, classifier, real_labels)
    result = {"fid": fid(real_images, fake, classifier), "kid": kid(real_images, fake, classifier),
              "classes_hit": coverage["classes_hit"], "kl": coverage["kl"], "histogram": coverage["histogram"]}
    if asked is not None:
        result["class_accuracy"] = class_accuracy(fake, asked, classifier)
        if names and real_labels is not None:
            with torch.no_grad():
                real_f, fake_f = (torch.cat([classifier.eval().features(b) for b in chunks(x)])
                                  for x in (real_images, fake))
            result["per_class"] = per_class_coverage(real_f, real_labels, fake_f, asked, names)
    return result


def evaluate(generator: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
             classifier: DigitClassifier, num_samples: int, *, seed: int = 12345) -> Dict:
    """:func:`digit_scores` (with KID as its mean) of ``num_samples`` seeded samples. For
    a generator with a moving average, ``fid_live`` and ``classes_hit_live`` are the
    FID and class coverage of its own (trained) weights beside it."""
    fake = generate(generator, num_samples, seed=seed)
    result = digit_scores(fake, real_images, real_labels, classifier, sample_labels(generator, num_samples))
    result["kid"] = result["kid"]["mean"]
    if getattr(generator, "ema", None) is not None:
        generator.use_ema = False
        try:
            live = generate(generator, num_samples, seed=seed)
        finally:
            generator.use_ema = True
        result["fid_live"] = fid(real_images, live, classifier)
        result["classes_hit_live"] = class_coverage(live, classifier, real_labels)["classes_hit"]
    return result


@torch.no_grad()
def diversity(images: torch.Tensor, classifier: DigitClassifier) -> float:
    """Mean pairwise distance of classifier features (over at most 500 images)."""
    feats = classifier.eval().features(images[:500])
    return float(torch.cdist(feats, feats).mean())


def mean_std(values: List[float]) -> Dict[str, object]:
    """``{"mean", "std", "per_seed"}`` of per-seed results (std 0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": list(values)}


class _GeneratorMetric(EvaluationMetric):
    """A torchgan ``EvaluationMetric`` that scores ``num_samples`` images of the generator
    against a ``reference`` from the real data; ``history`` keeps every result.

    The same noise (``seed``) is used at every evaluation. The Trainer logs the returned
    number (``logged_key`` picks it from a dict of results). Features are computed on
    the device the Trainer trains on; those of the real images once per run (the
    torchmetrics scorer keeps them between evaluations). A checkpoint keeps the settings
    and ``history`` only, neither the reference images nor the feature network: a resumed
    run scores with the metric objects it was given, and takes their history from the
    checkpoint.
    """

    logged_key: Optional[str] = None
    #: Attributes a checkpoint does not hold: the data and what is rebuilt from it.
    _not_saved = ("reference", "classifier", "_scorer")

    def __init__(self, reference: torch.Tensor, *, num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__()
        self.reference = reference.detach().cpu()
        self.num_samples = num_samples
        self.seed = seed
        self.history: list = []

    #: What the number is and in which features, in the TensorBoard tag (``FID-1k_Inception-v3``).
    measure, features = "score", "digit_classifier"

    @property
    def tag(self) -> str:
        """The metric's TensorBoard tag: what it measures and in how many samples."""
        return f"{protocol_name(self.measure, self.num_samples)}_{self.features}"

    def __getstate__(self) -> dict:
        return {k: (None if k in self._not_saved else v) for k, v in self.__dict__.items()}

    def score(self, fake: torch.Tensor):  # the result for ``fake``
        raise NotImplementedError

    def make_scorer(self):  # a torchmetrics metric that keeps its real features (reset_real_features=False)
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:  # [-1, 1] as the feature network takes them
        return images

    def scored(self, fake: torch.Tensor):
        """The scorer's result for ``fake``, the real features computed at the first call."""
        if self.reference is None:
            raise ValueError(f"this {type(self).__name__} was read from a checkpoint, which holds no reference "
                             f"images: build the metric again from the real data")
        scorer = self.__dict__.get("_scorer")
        if scorer is None:
            scorer = self._scorer = self.make_scorer().to(fake.device)
            for batch in chunks(self.reference, 100):
                scorer.update(self.prepare(batch.to(fake.device)), real=True)
        else:
            scorer.reset()  # the fake features only
        for batch in chunks(fake, 100):
            scorer.update(self.prepare(batch), real=False)
        return scorer.compute()

    def metric_ops(self, generator, device):
        """Called by the Trainer at the end of each epoch (arguments mapped by name)."""
        fake = generate(generator, self.num_samples, seed=self.seed, device=device).to(device)
        result = self.score(fake)
        self.history.append(result)
        return result if self.logged_key is None else result[self.logged_key]


class _ClassifierMetric(_GeneratorMetric):
    """A metric in the digit classifier's feature space (default: :func:`digit_classifier`)."""

    def __init__(self, reference: torch.Tensor, classifier: Optional[DigitClassifier] = None, *,
                 num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__(reference, num_samples=num_samples, seed=seed)
        self.classifier = classifier if classifier is not None else digit_classifier()


class FID(_ClassifierMetric):
    """Classifier-feature FID of the generator against real images (``reference``): a
    Fréchet distance in the digit classifier's features, logged as ``FD-1k_digit_classifier``."""

    measure = "FD"

    def make_scorer(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=_Features(self.classifier.eval()), reset_real_features=False)

    def score(self, fake: torch.Tensor) -> float:
        return float(self.scored(fake))


class KID(_ClassifierMetric):
    """Classifier-feature KID of the generator against real images (``reference``); the
    Trainer logs the mean over subsets."""

    logged_key = "mean"
    measure = "KID"

    def make_scorer(self):
        size = min(500, len(self.reference), self.num_samples)
        return kid_scorer(_Features(self.classifier.eval()), 50, size, reset_real_features=False)

    def score(self, fake: torch.Tensor) -> Dict[str, float]:
        mean, std = self.scored(fake)
        return {"mean": float(mean), "std": float(std)}


class ClassCoverage(_ClassifierMetric):
    """Class coverage of the generator against the real labels (``reference``); the
    Trainer logs the KL, ``history`` keeps every result."""

    logged_key = "kl"
    measure = "class_KL"

    def score(self, fake: torch.Tensor) -> Dict:
        return class_coverage(fake, self.classifier.to(fake.device), self.reference.to(fake.device))


class InceptionFID(_GeneratorMetric):
    """Standard Inception FID of the generator against real images (``reference``), with
    the Inception weights read from ``weights_path`` (see :func:`inception_fid`); the
    network is built once, on the training device. Logged as ``FID-1k_Inception-v3``."""

    measure, features = "FID", "Inception-v3"

    def __init__(self, reference: torch.Tensor, weights_path: os.PathLike, *, feature: int = 2048,
                 num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__(reference, num_samples=num_samples, seed=seed)
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"no Inception weights at {str(weights_path)!r}")
        self.weights_path = weights_path
        self.feature = feature

    def make_scorer(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=inception_features(self.weights_path, self.feature),
                                        reset_real_features=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return as_rgb_bytes(images)

    def score(self, fake: torch.Tensor) -> float:
        return float(self.scored(fake))


# Trainer checkpoints pickle the metric objects; before the subpackages these classes
# lived in torchgan_sagan/metrics.py.
for _metric in (FID, KID, ClassCoverage, InceptionFID):
    register_checkpoint_class(_metric, f"torchgan_sagan.metrics.{_metric.__name__}")
