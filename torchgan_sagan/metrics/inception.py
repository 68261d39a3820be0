"""The Inception-v3 network of standard FID, KID and IS, and its weights file.

The network is torch-fidelity's port of the TensorFlow Inception that FID was defined
with (also what torchmetrics runs). Its weights, torch-fidelity's
:data:`INCEPTION_FILE`, are fetched once from :data:`INCEPTION_URL` into the package's
cache folder (``$TORCHGAN_SAGAN_CACHE/inception/``) by :func:`inception_weights`, or
read from a file given; without a connection, the error names the file and the
address to fetch it from. :func:`inception_fid` and :func:`inception_kid` score with
torchmetrics; :mod:`torchgan_sagan.metrics.standard` has the full set (FID, KID, IS,
precision/recall) with torch-fidelity's own code. Images in [-1, 1], grayscale or RGB,
any size.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch

from ..files import default_cache_dir
from .sampling import chunks

__all__ = ["inception_features", "as_rgb_bytes", "kid_scorer", "inception_fid", "inception_kid",
           "inception_weights", "fold_batch_norm", "fidelity_inception", "InceptionWeightsMissing", "INCEPTION_FILE", "INCEPTION_URL"]

#: torch-fidelity's Inception-v3 weights (the TensorFlow FID network's, 2015-12-05).
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: Where torch-fidelity publishes them.
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class InceptionWeightsMissing(FileNotFoundError):
    """The Inception weights are neither given, nor cached, nor could be fetched."""


def inception_weights(path: Optional[os.PathLike] = None, *, fetch: bool = True,
                      cache_dir: Optional[os.PathLike] = None) -> Path:
    """The Inception weights file: ``path`` when given (it must exist); else the one in
    ``cache_dir`` (default: the package's cache folder, under ``inception/``), fetched
    there from :data:`INCEPTION_URL` the first time (``fetch``), written atomically.
    Raises :class:`InceptionWeightsMissing` (a ``FileNotFoundError``) naming the file and
    the address when there is none and it cannot be fetched."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise InceptionWeightsMissing(f"no Inception weights at {str(path)!r}: fetch {INCEPTION_URL} on a "
                                          f"connected machine and give its path")
        return path
    cached = (Path(cache_dir) if cache_dir is not None else default_cache_dir() / "inception") / INCEPTION_FILE
    if cached.is_file():
        return cached
    how = f"download {INCEPTION_URL} on a connected machine and put it at {cached}, or pass --inception-weights FILE"
    if not fetch:
        raise InceptionWeightsMissing(f"no Inception weights at {cached}: {how}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:  # torch.hub writes a temporary file beside it and renames it when complete
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except (OSError, ValueError) as err:  # URLError is an OSError; no connection, a proxy, a 404
        reason = getattr(err, "reason", None) or err
        raise InceptionWeightsMissing(f"no Inception weights at {cached}, and fetching them from {INCEPTION_URL} "
                                      f"failed ({reason}): {how}") from None
    return cached


@torch.no_grad()
def fold_batch_norm(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` (in eval mode) with each conv + BatchNorm pair made one conv with a bias,
    in place: the same function (features within 1e-6 relative), one pass less over each
    activation. With channels-last, Inception runs faster (on a CPU: docs/after-training.md)."""
    if net.training:
        raise ValueError("fold_batch_norm needs a network in eval mode (net.eval()): a training BatchNorm "
                         "normalizes by each batch's own statistics, which cannot be folded")
    for block in net.modules():
        conv, norm = getattr(block, "conv", None), getattr(block, "bn", None)
        if not (isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)):
            continue
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias = torch.nn.Parameter(bias, requires_grad=False)
        block.bn = torch.nn.Identity()
    return net


def fidelity_inception(path: os.PathLike, features) -> torch.nn.Module:
    """torch-fidelity's Inception-v3 with the weights file ``path``, giving ``features``
    (its output names), in eval mode, BatchNorm folded (:func:`fold_batch_norm`), and
    channels-last."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ModuleNotFoundError as err:
        raise ImportError("Inception features need torch-fidelity: python -m pip install torch-fidelity") from err
    net = FeatureExtractorInceptionV3("inception-v3-compat", list(features), feature_extractor_weights_path=str(path))
    return fold_batch_norm(net.eval()).to(memory_format=torch.channels_last)


class _Inception(torch.nn.Module):
    """torch-fidelity's Inception-v3 giving one layer's features, as torchmetrics takes a
    feature network (``num_features``). torchmetrics' own wrapper of it resizes images
    of other sizes than 299 otherwise (its features differed by up to 20% at 48x48), so
    its FID was not torch-fidelity's; this one is."""

    def __init__(self, path: Path, feature: int) -> None:
        super().__init__()
        self.net = fidelity_inception(path, [str(feature)])
        self.num_features = feature

    def train(self, mode: bool = True) -> "_Inception":
        return super().train(False)  # always in eval mode (BatchNorm statistics fixed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0].to(torch.float32)


def inception_features(weights_path: Optional[os.PathLike] = None, feature: int = 2048) -> torch.nn.Module:
    """torch-fidelity's Inception-v3 as torchmetrics' feature network, with the weights
    of ``weights_path`` (default: the cached copy, see :func:`inception_weights`);
    ``feature`` picks the layer (64, 192, 768 or the 2048-d pool, the standard one).
    It takes uint8 RGB images of any size (:func:`as_rgb_bytes`)."""
    if str(feature) not in ("64", "192", "768", "2048"):
        raise ValueError(f"feature must be 64, 192, 768 or 2048 (the pool, the standard one), got {feature}")
    return _Inception(inception_weights(weights_path), int(feature))


def as_rgb_bytes(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 RGB, what the Inception extractor takes."""
    x = (((x.float() + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.size(1) == 1 else x


def kid_scorer(feature: torch.nn.Module, subsets: int, subset_size: int, **kwargs):
    """torchmetrics' ``KernelInceptionDistance`` on the features of ``feature`` (its
    warning that it keeps every feature, a few MB here, silenced)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return KernelInceptionDistance(feature=feature, subsets=subsets, subset_size=subset_size, **kwargs)


def _fill(metric, real: torch.Tensor, fake: torch.Tensor):
    for batch in chunks(real, 100):
        metric.update(as_rgb_bytes(batch), real=True)
    for batch in chunks(fake, 100):
        metric.update(as_rgb_bytes(batch), real=False)
    return metric.compute()


@torch.no_grad()
def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights_path: os.PathLike, *,
                  feature: int = 2048) -> float:
    """Standard FID (Inception-v3 pool features, 2048-d) with weights from ``weights_path``."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=inception_features(weights_path, feature))
    return float(_fill(metric, real, fake))


@torch.no_grad()
def inception_kid(real: torch.Tensor, fake: torch.Tensor, weights_path: os.PathLike, *, feature: int = 2048,
                  subsets: int = 50, subset_size: int = 1000) -> Dict[str, float]:
    """Standard KID in Inception-v3 features: ``{"mean", "std"}`` over subsets
    (``subset_size`` capped at the smaller sample count)."""
    metric = kid_scorer(inception_features(weights_path, feature), subsets, min(subset_size, len(real), len(fake)))
    mean, std = _fill(metric, real, fake)
    return {"mean": float(mean), "std": float(std)}
