"""Offline quality metrics: FID, KID and class coverage in a digit classifier's feature
space, and standard Inception FID from weights the user supplies.

No metric here downloads anything. The Inception network that FID normally uses has
to be fetched from the internet, so by default the features come from a small CNN
trained on the handwritten digits that ship with scikit-learn (:func:`digit_classifier`):
trained deterministically on a fixed split, cached on disk, and reported with its
test accuracy. FID and KID come from torchmetrics, fed with those features.

Each metric works standalone (:func:`fid`, :func:`kid`, :func:`class_coverage`) and as a
torchgan ``EvaluationMetric`` that the ``Trainer`` runs at the end of every epoch
(:class:`FID`, :class:`KID`, :class:`ClassCoverage`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchgan.metrics import EvaluationMetric

from .checkpoints import atomic_save

__all__ = [
    "DigitClassifier",
    "digit_classifier",
    "train_digit_classifier",
    "fid",
    "kid",
    "class_coverage",
    "inception_fid",
    "generate",
    "sample_labels",
    "class_accuracy",
    "FID",
    "KID",
    "ClassCoverage",
    "InceptionFID",
]

#: Bump when the classifier or its training changes, so stale caches are not used.
_CLASSIFIER_VERSION = 2
_INPUT_SIZE = 32


def _cache_dir() -> Path:
    root = os.environ.get("TORCHGAN_SAGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torchgan_sagan"
    )
    return Path(root)


class DigitClassifier(nn.Module):
    """A small CNN for 10 digit classes; its 128-d penultimate layer is the feature space.

    Takes grayscale images in [-1, 1] of any size (resized to 32x32 inside).
    ``num_features`` tells torchmetrics the feature width. Features are divided by
    ``feature_scale``, the RMS feature of the training digits, so that distances come
    out in units of the real data's spread.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("feature_scale", torch.ones(()))
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 8, 8)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 4, 4)
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, self.num_features), nn.ReLU(),  # (B, 128)
        )
        self.head = nn.Linear(self.num_features, 10)
        self.test_accuracy: Optional[float] = None

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) not in (1, 3):
            raise ValueError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
        if x.size(1) == 3:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (_INPUT_SIZE, _INPUT_SIZE):
            x = F.interpolate(x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 128), scaled by ``feature_scale``."""
        return self.body(self._prepare(x)) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> class logits (B, 10)."""
        return self.head(self.body(self._prepare(x)))


class _Features(nn.Module):
    """The classifier's feature layer as the ``feature`` module torchmetrics expects."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def _digit_split():
    """The fixed train/test split of scikit-learn's digits at 32x32 (75% / 25%, stratified)."""
    from sklearn.model_selection import train_test_split

    from .data import embedded_digits

    images, labels = embedded_digits(_INPUT_SIZE).tensors
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=0.25, random_state=0, stratify=labels.numpy()
    )
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill at -1)."""
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=gen)
    h, w = x.shape[-2:]
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


@torch.no_grad()
def _accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (model(images).argmax(1) == labels).float().mean().item()


def train_digit_classifier(*, seed: int = 0, epochs: int = 15, verbose: bool = False) -> DigitClassifier:
    """Train :class:`DigitClassifier` on the fixed split; sets ``test_accuracy``.

    Deterministic for a given seed (one thread, seeded shuffles and shifts).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (x_train, y_train), (x_test, y_test) = _digit_split()
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = DigitClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=gen)
            for start in range(0, len(order), 64):
                idx = order[start : start + 64]
                loss = F.cross_entropy(model(_shift(x_train[idx], gen)), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if verbose:
                print(f"digit classifier epoch {epoch + 1}/{epochs}: test accuracy {_accuracy(model, x_test, y_test):.4f}")
        model.test_accuracy = _accuracy(model, x_test, y_test)
        with torch.no_grad():
            model.feature_scale.copy_(model.body(x_train).pow(2).mean().sqrt())
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def digit_classifier(*, cache_dir: Optional[os.PathLike] = None, retrain: bool = False,
                     verbose: bool = False) -> DigitClassifier:
    """The digit classifier, trained once and then loaded from the cache.

    The cache is ``$TORCHGAN_SAGAN_CACHE`` or ``~/.cache/torchgan_sagan`` unless
    ``cache_dir`` is given; training takes well under a minute on a CPU.
    """
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    key = hashlib.sha1(f"digits-v{_CLASSIFIER_VERSION}".encode()).hexdigest()[:10]
    path = folder / f"digit_classifier-{key}.pt"
    model = DigitClassifier()
    if path.is_file() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model.test_accuracy = float(state["test_accuracy"])
        return model.eval()
    model = train_digit_classifier(verbose=verbose)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save({"model": model.state_dict(), "test_accuracy": model.test_accuracy}, path)
    return model


def _batches(x: torch.Tensor, size: int = 500):
    for start in range(0, len(x), size):
        yield x[start : start + size]


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, classifier: DigitClassifier) -> float:
    """Fréchet distance between real and fake images in the classifier's feature space."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Features(classifier.eval()))
    for batch in _batches(real):
        metric.update(batch, real=True)
    for batch in _batches(fake):
        metric.update(batch, real=False)
    return float(metric.compute())


@torch.no_grad()
def kid(real: torch.Tensor, fake: torch.Tensor, classifier: DigitClassifier, *,
        subsets: int = 50, subset_size: int = 500) -> Dict[str, float]:
    """Kernel inception distance in the classifier's feature space: ``{"mean", "std"}``.

    ``subset_size`` is capped at the smaller sample count.
    """
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    subset_size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # it warns that it keeps all features: a few MB here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=_Features(classifier.eval()), subsets=subsets, subset_size=subset_size
        )
    for batch in _batches(real):
        metric.update(batch, real=True)
    for batch in _batches(fake):
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
    probs = torch.cat([F.softmax(classifier(b), dim=1) for b in _batches(images)])
    counts = torch.bincount(probs.argmax(1), minlength=10).double()
    gen_share = counts / counts.sum()
    if real_labels is None:
        real_share = torch.full((10,), 0.1, dtype=torch.float64)
    else:
        real_share = torch.bincount(real_labels, minlength=10).double()
        real_share = real_share / real_share.sum()
    support = gen_share > 0
    kl = float((gen_share[support] * (gen_share[support] / real_share[support].clamp_min(1e-12)).log()).sum())
    return {
        "histogram": gen_share.tolist(),
        "classes_hit": int((gen_share >= min_share).sum()),
        "kl": kl,
        "mean_confidence": float(probs.max(1).values.mean()),
    }


@torch.no_grad()
def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights_path: os.PathLike, *,
                  feature: int = 2048) -> float:
    """Standard FID (Inception-v3 pool features, 2048-d) with weights from ``weights_path``.

    The weights are torch-fidelity's ``pt_inception-2015-12-05`` file, which torchmetrics
    would otherwise download. Images in [-1, 1], grayscale or RGB, any size.
    ``feature`` picks another Inception layer (64, 192 or 768) as torchmetrics allows.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no Inception weights at {str(path)!r}: download torch-fidelity's "
            f"pt_inception-2015-12-05-6726825d.pth on a connected machine and pass its path"
        )
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(
            feature=feature, normalize=True, feature_extractor_weights_path=str(path)
        )
    except ModuleNotFoundError as err:
        raise ImportError("Inception FID needs torch-fidelity: python -m pip install torch-fidelity") from err

    def as_rgb01(x: torch.Tensor) -> torch.Tensor:
        x = ((x.float() + 1) / 2).clamp(0, 1)
        return x.expand(-1, 3, -1, -1) if x.size(1) == 1 else x

    for batch in _batches(real, 100):
        metric.update(as_rgb01(batch), real=True)
    for batch in _batches(fake, 100):
        metric.update(as_rgb01(batch), real=False)
    return float(metric.compute())


@torch.no_grad()
def sample_labels(generator: nn.Module, num_samples: int) -> Optional[torch.Tensor]:
    """The classes :func:`generate` asks a conditional generator for: 0, 1, ...,
    num_classes - 1, 0, 1, ... (equal shares); ``None`` for an unconditional one."""
    num_classes = getattr(generator, "num_classes", 0)
    return torch.arange(num_samples) % num_classes if num_classes else None


def generate(generator: nn.Module, num_samples: int, *, seed: int = 0, batch_size: int = 500,
             device: Optional[torch.device] = None) -> torch.Tensor:
    """``num_samples`` images from ``generator`` in eval mode, on the CPU, from seeded noise
    (a generator with a weight average runs the average in eval mode). A conditional
    generator is asked for the classes of :func:`sample_labels`."""
    device = device or next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        z = torch.randn(num_samples, generator.encoding_dims, generator=torch.Generator().manual_seed(seed))
        labels = sample_labels(generator, num_samples)
        if labels is None:
            return torch.cat([generator(b.to(device)).cpu() for b in _batches(z, batch_size)])
        return torch.cat([generator(b.to(device), y.to(device)).cpu()
                          for b, y in zip(_batches(z, batch_size), _batches(labels, batch_size))])
    finally:
        generator.train(was_training)


@torch.no_grad()
def class_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: DigitClassifier) -> float:
    """Share of ``images`` that ``classifier`` puts in the class in ``labels`` (the class
    each was generated for): how well a conditional generator obeys its labels."""
    classifier.eval()
    predicted = torch.cat([classifier(b).argmax(1) for b in _batches(images)])
    return float((predicted == labels).double().mean())


class _GeneratorMetric(EvaluationMetric):
    """A torchgan ``EvaluationMetric`` that scores ``num_samples`` images of the generator
    against a ``reference`` from the real data; ``history`` keeps every result.

    The same noise (``seed``) is used at every evaluation. The Trainer logs the returned
    number (``logged_key`` picks it from a dict of results).
    """

    logged_key: Optional[str] = None

    def __init__(self, reference: torch.Tensor, *, num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__()
        self.reference = reference
        self.num_samples = num_samples
        self.seed = seed
        self.history: list = []

    def score(self, fake: torch.Tensor):
        raise NotImplementedError

    def metric_ops(self, generator, device):
        """Called by the Trainer at the end of each epoch (arguments mapped by name)."""
        result = self.score(generate(generator, self.num_samples, seed=self.seed, device=device))
        self.history.append(result)
        return result if self.logged_key is None else result[self.logged_key]


class _ClassifierMetric(_GeneratorMetric):
    """A metric in the digit classifier's feature space (default: :func:`digit_classifier`)."""

    def __init__(self, reference: torch.Tensor, classifier: Optional[DigitClassifier] = None, *,
                 num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__(reference, num_samples=num_samples, seed=seed)
        self.classifier = classifier if classifier is not None else digit_classifier()


class FID(_ClassifierMetric):
    """Classifier-feature FID of the generator against real images (``reference``)."""

    def score(self, fake: torch.Tensor) -> float:
        return fid(self.reference, fake, self.classifier)


class KID(_ClassifierMetric):
    """Classifier-feature KID of the generator against real images (``reference``); the
    Trainer logs the mean over subsets."""

    logged_key = "mean"

    def score(self, fake: torch.Tensor) -> Dict[str, float]:
        return kid(self.reference, fake, self.classifier)


class ClassCoverage(_ClassifierMetric):
    """Class coverage of the generator against the real labels (``reference``); the
    Trainer logs the KL, ``history`` keeps every result."""

    logged_key = "kl"

    def score(self, fake: torch.Tensor) -> Dict:
        return class_coverage(fake, self.classifier, self.reference)


class InceptionFID(_GeneratorMetric):
    """Standard Inception FID of the generator against real images (``reference``), with
    the Inception weights read from ``weights_path`` (see :func:`inception_fid`)."""

    def __init__(self, reference: torch.Tensor, weights_path: os.PathLike, *, feature: int = 2048,
                 num_samples: int = 1000, seed: int = 0) -> None:
        super().__init__(reference, num_samples=num_samples, seed=seed)
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"no Inception weights at {str(weights_path)!r}")
        self.weights_path = weights_path
        self.feature = feature

    def score(self, fake: torch.Tensor) -> float:
        return inception_fid(self.reference, fake, self.weights_path, feature=self.feature)
