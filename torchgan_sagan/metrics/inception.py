"""Standard FID and KID: Inception-v3 features from a weights file the user supplies.

torchmetrics would download the Inception weights; nothing here does. The file is
torch-fidelity's ``pt_inception-2015-12-05-6726825d.pth`` (fetch it once on a
connected machine). Images in [-1, 1], grayscale or RGB, any size.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict

import torch

from .sampling import chunks

__all__ = ["inception_features", "as_rgb_bytes", "kid_scorer", "inception_fid", "inception_kid"]


def inception_features(weights_path: os.PathLike, feature: int = 2048) -> torch.nn.Module:
    """torchmetrics' Inception-v3 feature extractor with the weights of ``weights_path``;
    ``feature`` picks the layer (64, 192, 768 or the 2048-d pool, the standard one)."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no Inception weights at {str(path)!r}: download torch-fidelity's "
            f"pt_inception-2015-12-05-6726825d.pth on a connected machine and pass its path"
        )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ModuleNotFoundError as err:
        raise ImportError("Inception features need torch-fidelity: python -m pip install torch-fidelity") from err
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(feature)],
                              feature_extractor_weights_path=str(path))


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
