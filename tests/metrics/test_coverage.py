"""Density and coverage: equal to the authors' prdc package, and they say what they
claim on samples that miss part of the real images."""

import pytest
import torch

from torchgan_sagan.metrics.coverage import coverage_summary, density_coverage, per_class_coverage


def _features(n, d=32, seed=0, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_and_coverage_equal_the_authors_prdc_in_chunks(k):
    prdc = pytest.importorskip("prdc")
    real, fake = _features(300, seed=1), _features(170, seed=2, shift=0.2, scale=1.3)
    ours = density_coverage(real, fake, k, chunk=64)  # chunks smaller than both sets
    theirs = prdc.compute_prdc(real.numpy(), fake.numpy(), k)
    assert ours["density"] == pytest.approx(float(theirs["density"]), rel=1e-12)
    assert ours["coverage"] == pytest.approx(float(theirs["coverage"]), rel=1e-12)
    assert 0 < ours["coverage"] < 1 and ours["density"] > 0


def test_samples_of_one_of_two_clusters_cover_half_and_lie_densely():
    a, b = _features(200, seed=3, shift=-20), _features(200, seed=4, shift=20)
    real = torch.cat([a, b])
    half = density_coverage(real, _features(400, seed=5, shift=-20))
    assert 0.45 <= half["coverage"] <= 0.5 and half["density"] > 0.8
    both = density_coverage(real, torch.cat([_features(200, seed=6, shift=-20), _features(200, seed=7, shift=20)]))
    assert both["coverage"] > 0.9
    far = density_coverage(real, _features(400, seed=8, shift=100))
    assert far == {"density": 0.0, "coverage": 0.0}


def test_each_class_is_scored_against_its_own_real_images_by_name():
    real = torch.cat([_features(30, seed=9, shift=-20), _features(30, seed=10, shift=20), _features(1, seed=11)])
    real_labels = torch.tensor([0] * 30 + [1] * 30 + [2])
    # class "cat" drawn where its real images are, "dog" drawn where cats are, "owl" has one real image
    fake = torch.cat([_features(40, seed=12, shift=-20), _features(40, seed=13, shift=-20), _features(5, seed=14)])
    fake_labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 5)
    result = per_class_coverage(real, real_labels, fake, fake_labels, ["cat", "dog", "owl", "yak"])
    assert result["cat"]["coverage"] > 0.8 and result["dog"]["coverage"] == 0.0
    assert result["cat"]["real"] == 30 and result["cat"]["samples"] == 40 and result["cat"]["k"] == 5
    assert result["owl"] is None and result["yak"] is None  # one real image; no real image nor sample
    line = coverage_summary(result)
    assert line.startswith("mean 0.") and "lowest: dog 0.00, cat" in line and "2 not scored" in line


def test_k_shrinks_for_a_class_with_few_real_images_and_too_few_rows_is_an_error():
    real, fake = _features(3, seed=15), _features(4, seed=16)
    assert per_class_coverage(real, torch.zeros(3, dtype=torch.long), fake, torch.zeros(4, dtype=torch.long),
                              ["only"])["only"]["k"] == 2
    with pytest.raises(ValueError, match="k=5 needs at least 6 feature rows, got 3"):
        density_coverage(real, fake, 5)
    with pytest.raises(ValueError, match="at least one generated sample"):
        density_coverage(_features(10), fake[:0])
