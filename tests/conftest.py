import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_images():
    """Eight random 3x16x16 images in [-1, 1] with dummy labels, as a torchgan dataset."""
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    return torch.utils.data.TensorDataset(images, torch.zeros(8, dtype=torch.long))


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory):
    """A cache folder in which the digit classifier is trained once per test session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digit_classifier(classifier_cache):
    from torchgan_sagan.metrics import digit_classifier as load

    return load(cache_dir=classifier_cache)
