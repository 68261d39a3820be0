"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
for Generative Models"), overall and per class.

Each real image gets a ball reaching its ``k``-th nearest other real image. *Coverage*
is the share of real images whose ball holds at least one sample: 1 when the samples
reach everywhere the real images are, low when whole regions (or classes) are never
drawn. *Density* counts how many real balls hold each sample, divided by ``k``: about 1
when samples lie as the real images do, below when they fall outside.

Neither torchmetrics nor torch-fidelity has these two; the authors' ``prdc`` package
does, but keeps every pairwise distance (a 50,000 x 50,000 matrix at FID-50k), so they
are computed here in chunks, in float64, and a test holds them equal to ``prdc``'s.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from .sampling import chunks

__all__ = ["nearest_neighbour_radii", "density_coverage", "per_class_coverage", "coverage_summary", "NEAREST_K"]

#: The paper's ``k`` (its recommendation for 10,000 real and generated images).
NEAREST_K = 5


@torch.no_grad()
def nearest_neighbour_radii(features: torch.Tensor, k: int = NEAREST_K, *, chunk: int = 1024) -> torch.Tensor:
    """Each row's distance to its ``k``-th nearest other row (N,)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k={k} needs at least {k + 1} feature rows, got {len(features)}")
    x = features.double()
    # each row's own distance (0) comes first, so the k-th other row is the (k + 1)-th smallest
    return torch.cat([torch.cdist(b, x).kthvalue(k + 1, dim=1).values for b in chunks(x, chunk)])


@torch.no_grad()
def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K, *,
                     chunk: int = 1024) -> Dict[str, float]:
    """``{"density", "coverage"}`` of ``fake`` features (M x D) against ``real`` (N x D)."""
    if len(fake) == 0:
        raise ValueError("density and coverage need at least one generated sample")
    radii = nearest_neighbour_radii(real, k, chunk=chunk)  # (N,)
    x = real.double()
    inside = 0
    nearest = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for b in chunks(fake.double(), chunk):
        d = torch.cdist(x, b)  # (N, chunk): real to sample
        inside += int((d < radii[:, None]).sum())
        nearest = torch.minimum(nearest, d.min(dim=1).values)
    return {"density": inside / (k * len(fake)), "coverage": float((nearest < radii).double().mean())}


def per_class_coverage(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
                       fake_labels: torch.Tensor, names: Sequence[str], k: int = NEAREST_K) -> Dict[str, Optional[Dict]]:
    """Coverage and density of each class's samples against that class's real images,
    by class name: ``{name: {"coverage", "density", "real", "samples", "k"}}``, or
    ``None`` for a class with fewer than 2 real images or no sample. ``k`` shrinks to
    the class's real images less one where it has fewer than ``k + 1``."""
    result: Dict[str, Optional[Dict]] = {}
    for index, name in enumerate(names):
        r, f = real[real_labels == index], fake[fake_labels == index]
        if len(r) < 2 or len(f) == 0:
            result[name] = None
            continue
        kk = min(k, len(r) - 1)
        result[name] = {**density_coverage(r, f, kk), "real": len(r), "samples": len(f), "k": kk}
    return result


def coverage_summary(per_class: Dict[str, Optional[Dict]], lowest: int = 3) -> str:
    """One line: the mean coverage over the classes scored, and the lowest by name."""
    scored: List = sorted((v["coverage"], name) for name, v in per_class.items() if v is not None)
    if not scored:
        return "no class has 2 real images and a sample"
    mean = sum(c for c, _ in scored) / len(scored)
    worst = ", ".join(f"{name} {c:.2f}" for c, name in scored[:lowest])
    unscored = len(per_class) - len(scored)
    return (f"mean {mean:.3f} over {len(scored)} classes; lowest: {worst}"
            + (f"; {unscored} not scored (under 2 real images)" if unscored else ""))
