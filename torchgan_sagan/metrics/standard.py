"""The scores papers print: FID, KID, Inception Score and precision/recall in the
standard Inception-v3 features, computed by torch-fidelity's own code, with density and
coverage beside them (:mod:`torchgan_sagan.metrics.coverage`), per class for labelled
images.

One pass of torch-fidelity's Inception (:mod:`torchgan_sagan.metrics.inception` gets its
weights) gives each image's 2048-d pool features (FID, KID, precision/recall) and its
logits (IS); torch-fidelity's functions turn them into the scores, with its defaults
(KID: 100 subsets of up to 1,000; IS: 10 splits; precision/recall: 3 nearest
neighbours, Kynkäänniemi et al. 2019). Images go in as uint8 RGB at their own size,
and the network resizes them to 299x299 as TensorFlow 1 did, so the numbers are those
torch-fidelity computes from the same images saved as PNG files (a test holds them to
1e-3). The real images' features are computed once and cached, keyed by their pixels
and the weights (:func:`reference_features`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from ..files import atomic_write, default_cache_dir
from .coverage import density_coverage, per_class_coverage
from .inception import as_rgb_bytes, fidelity_inception, inception_weights
from .sampling import chunks

__all__ = ["inception_extractor", "image_features", "reference_features", "standard_scores", "precision_recall",
           "protocol_name"]

#: The extractor's outputs: pool features, and logits without the bias (as IS uses them).
POOL, LOGITS = "2048", "logits_unbiased"
#: Rows of the distance blocks precision/recall takes at once (5,000 x 50,000 float32: 1 GB).
PRC_BLOCK = 5000


def inception_extractor(weights_path: Optional[os.PathLike] = None, device="cpu") -> torch.nn.Module:
    """torch-fidelity's Inception-v3 with the weights of ``weights_path`` (default: the
    package's cached copy, fetched once; see :func:`inception_weights`), on ``device``,
    giving pool features and logits."""
    path = inception_weights(weights_path)
    net = fidelity_inception(path, [POOL, LOGITS]).to(device)
    net.weights_path = path
    return net


@torch.no_grad()
def image_features(images: Union[torch.Tensor, Iterable[torch.Tensor]], extractor: torch.nn.Module, *,
                   batch_size: int = 100, progress: bool = False, what: str = "images") -> Dict[str, torch.Tensor]:
    """``{POOL: N x 2048, LOGITS: N x 1008}`` (float32, CPU) of images in [-1, 1]: a
    tensor, or batches of them as they come (e.g.
    :class:`~torchgan_sagan.metrics.sampling.GeneratedBatches`), so that only features
    are kept."""
    device = next(extractor.parameters()).device
    if torch.is_tensor(images):
        images = [images]
    total = sum(map(len, images)) if isinstance(images, list) else getattr(images, "num_images", None)
    pools, logits = [], []
    with tqdm(total=total, desc=f"Inception features of {what}", unit="image", dynamic_ncols=True,
              disable=not progress) as bar:
        for given in images:
            for batch in chunks(given, batch_size):
                pool, logit = extractor(as_rgb_bytes(batch).to(device))
                pools.append(pool.cpu())
                logits.append(logit.cpu())
                bar.update(len(batch))
    return {POOL: torch.cat(pools), LOGITS: torch.cat(logits)}


def _weights_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reference_features(real: torch.Tensor, extractor: torch.nn.Module, *, cache_dir: Optional[os.PathLike] = None,
                       batch_size: int = 100, progress: bool = False) -> Tuple[torch.Tensor, bool]:
    """The pool features of the real images, and whether they came from the cache
    (``cache_dir``, default: the package's, under ``reference/``). The key is a hash of
    the pixels the network sees and of the weights file, so a changed folder, size, crop
    or network never reuses them."""
    digest = hashlib.sha256(_weights_digest(extractor.weights_path).encode())
    for batch in chunks(real, 1000):
        digest.update(as_rgb_bytes(batch).numpy().tobytes())
    digest.update(str(tuple(real.shape)).encode())
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "reference"
    path = folder / f"inception-pool-{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path)), True
    features = image_features(real, extractor, batch_size=batch_size, progress=progress, what="real images")[POOL]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.save(f, features.numpy(), allow_pickle=False))
    return features, False


def precision_recall(fake: torch.Tensor, real: torch.Tensor) -> Dict[str, float]:
    """torch-fidelity's precision and recall of ``fake`` against ``real`` features (3
    nearest neighbours), with the distances taken :data:`PRC_BLOCK` rows at a time: its
    default keeps every sample-to-sample distance, 10 GB at 50,000 samples (an
    evaluation was killed for memory there after its two hours of Inception)."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    return prc_features_to_metric(fake, real, verbose=False, save_cpu_ram=True, prc_batch_size=PRC_BLOCK)


def protocol_name(metric: str, num_samples: int) -> str:
    """``FID-50k``, ``FID-1k``, ``FID-1500``: the score and the samples it was given."""
    return f"{metric}-{num_samples // 1000}k" if num_samples % 1000 == 0 else f"{metric}-{num_samples}"


def standard_scores(fake: Union[torch.Tensor, Iterable[torch.Tensor]], real: torch.Tensor, *, weights_path: Optional[os.PathLike] = None,
                    device="cpu", batch_size: int = 100, cache_dir: Optional[os.PathLike] = None,
                    progress: bool = False, seed: int = 2020,
                    classes: Optional[Tuple[torch.Tensor, torch.Tensor, Sequence[str]]] = None) -> Dict:
    """FID, KID (``{"mean", "std"}``), IS (``{"mean", "std"}``), precision and recall of
    ``fake`` against ``real`` (both in [-1, 1], any size; ``fake`` may come in batches, as
    :func:`image_features` takes them), by torch-fidelity's functions
    on Inception features, and density and coverage; ``reference_cached`` says whether
    the real features were read from the cache. ``seed``: of KID's subsets and IS's
    shuffle (torch-fidelity's 2020). ``classes``: ``(real_labels, fake_labels, names)``
    adds ``per_class`` (:func:`~torchgan_sagan.metrics.coverage.per_class_coverage`)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    extractor = inception_extractor(weights_path, device)
    real_pool, cached = reference_features(real, extractor, cache_dir=cache_dir, batch_size=batch_size,
                                           progress=progress)
    fake_features = image_features(fake, extractor, batch_size=batch_size, progress=progress, what="samples")
    fake_pool = fake_features[POOL]
    fid = fid_statistics_to_metric(fid_features_to_statistics(fake_pool), fid_features_to_statistics(real_pool),
                                   verbose=False)[KEY_METRIC_FID]
    kid = kid_features_to_metric(fake_pool, real_pool, kid_subset_size=min(1000, len(fake_pool), len(real_pool)),
                                 rng_seed=seed, verbose=False)
    isc = isc_features_to_metric(fake_features[LOGITS], splits=10, shuffle=True, rng_seed=seed)
    prc = precision_recall(fake_pool, real_pool)
    extra = density_coverage(real_pool, fake_pool)
    if classes is not None:
        extra["per_class"] = per_class_coverage(real_pool, classes[0], fake_pool, classes[1], classes[2])
    return {"fid": float(fid),
            "kid": {"mean": float(kid["kernel_inception_distance_mean"]),
                    "std": float(kid["kernel_inception_distance_std"])},
            "inception_score": {"mean": float(isc["inception_score_mean"]), "std": float(isc["inception_score_std"])},
            "precision": float(prc["precision"]), "recall": float(prc["recall"]),
            **extra, "reference_cached": cached, "weights": str(extractor.weights_path)}
