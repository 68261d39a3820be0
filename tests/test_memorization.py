import torch

from torchgan_sagan.memorization import match_training_images, memorization_report, nearest_training_images


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
