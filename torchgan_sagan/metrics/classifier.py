"""The digit classifier whose features the offline metrics use.

A small CNN trained on the handwritten digits that ship with scikit-learn (no
download): deterministically, on a fixed stratified split, cached on disk and
reported with its test accuracy. Its 128-d penultimate layer is the feature space of
:func:`torchgan_sagan.metrics.fid` and friends; its class head scores class coverage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import translation
from ..data import embedded_digits
from ..files import atomic_save, default_cache_dir, register_checkpoint_class

__all__ = ["DigitClassifier", "digit_classifier", "train_digit_classifier"]

#: Bump when the classifier or its training changes, so stale caches are not used.
_CLASSIFIER_VERSION = 2
_INPUT_SIZE = 32


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


# The metrics keep the classifier, so trainer checkpoints pickle it and its layers; it
# lived in torchgan_sagan/classifier.py before the subpackages.
register_checkpoint_class(DigitClassifier, "torchgan_sagan.classifier.DigitClassifier")
for _layer in (nn.Sequential, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear):
    register_checkpoint_class(_layer)


def _digit_split():
    """The fixed train/test split of scikit-learn's digits at 32x32 (75% / 25%, stratified)."""
    from sklearn.model_selection import train_test_split

    images, labels = embedded_digits(_INPUT_SIZE).tensors
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=0.25, random_state=0, stratify=labels.numpy()
    )
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


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
                loss = F.cross_entropy(model(translation(x_train[idx], pixels=3, fill=-1.0, generator=gen)), y_train[idx])
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
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
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
