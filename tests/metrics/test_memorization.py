import pytest
import torch

from torchgan_sagan.metrics.memorization import match_training_images, memorization_report, nearest_training_images


def test_copies_are_flagged_and_new_images_are_not():
    gen = torch.Generator().manual_seed(0)
    training = torch.rand(50, 1, 8, 8, generator=gen) * 2 - 1
    copies = training[:20] + 0.01 * torch.randn(20, 1, 8, 8, generator=gen)
    report = memorization_report(copies, training)
    assert report["median_ratio"] < 0.1 and report["near_copies"] == 1.0
    assert report["indices"] == list(range(20))
    new = torch.rand(20, 1, 8, 8, generator=gen) * 2 - 1
    report = memorization_report(new, training)
    assert report["median_ratio"] > 0.8 and report["near_copies"] < 0.2


def test_nearest_excluding_itself():
    points = torch.tensor([[0.0], [1.0], [3.0]]).view(3, 1, 1, 1)
    distances, indices = nearest_training_images(points, points, exclude_self=True)
    assert indices.tolist() == [1, 0, 1] and torch.allclose(distances, torch.tensor([1.0, 1.0, 2.0]))


def test_training_images_are_matched_to_the_samples():
    assert match_training_images(torch.rand(3, 3, 64, 64), torch.rand(1, 1, 32, 32)).shape == (3, 1, 32, 32)
    assert match_training_images(torch.rand(3, 1, 16, 16), torch.rand(1, 3, 32, 32)).shape == (3, 3, 32, 32)


def test_collapse_is_not_called_copying():
    # A collapsed generator: the mean training image plus a little noise. Pixel by pixel
    # it is close to many training images; it is no copy of any of them.
    gen = torch.Generator().manual_seed(0)
    training = torch.rand(200, 1, 8, 8, generator=gen) * 2 - 1
    collapsed = training.mean(0, keepdim=True) + 0.02 * torch.randn(300, 1, 8, 8, generator=gen)
    report = memorization_report(collapsed, training)
    assert report["median_ratio"] < 0.8  # closer to the training set than it is to itself
    assert report["spread_ratio"] < 0.1
    assert report["verdict"].startswith("the samples have collapsed")


def test_verdicts_for_copies_and_new_images():
    gen = torch.Generator().manual_seed(1)
    training = torch.rand(60, 1, 8, 8, generator=gen) * 2 - 1
    copies = training[:40] + 0.01 * torch.randn(40, 1, 8, 8, generator=gen)
    report = memorization_report(copies, training)
    assert report["spread_ratio"] > 0.8 and report["verdict"].startswith("the samples look like copies")
    report = memorization_report(torch.rand(60, 1, 8, 8, generator=gen) * 2 - 1, training)
    assert report["verdict"].startswith("new images")


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 samples and 2 training images"):
        memorization_report(torch.rand(1, 1, 8, 8), torch.rand(5, 1, 8, 8))


def test_training_images_that_repeat_give_no_verdict_instead_of_an_endless_ratio():
    """A folder whose images are mostly duplicates (here: two, each twice) puts the
    training images at distance 0 from each other; the ratio then divides by nothing."""
    g = torch.Generator().manual_seed(0)
    two = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    report = memorization_report(torch.rand(50, 1, 8, 8, generator=g) * 2 - 1, torch.cat([two, two]))
    assert report["train_to_train"]["median"] == 0
    assert report["verdict"].startswith("no verdict: half or more of the training images have an exact copy")
