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


def _one_iteration(cfg, tmp_path, batch=2, *, trainer=None, labels=None):
    from torchgan_sagan import make_trainer, train_step

    trainer = trainer or make_trainer(cfg, out=tmp_path, device="cpu")
    size, channels = cfg.image_size, cfg.image_channels
    images = torch.rand(batch, channels, size, size) * 2 - 1
    if cfg.num_classes and labels is None:
        labels = torch.randint(0, cfg.num_classes, (batch,))
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    lgen, ldis = train_step(trainer, images, labels)
    assert trainer.loss_information["discriminator_iters"] >= 1
    assert torch.isfinite(torch.tensor([lgen, ldis])).all()
    return trainer, before


@pytest.fixture
def one_iteration():
    """``one_iteration(cfg, tmp_path)``: one training iteration of ``cfg`` on random
    images (random labels when conditional), through ``make_trainer`` and
    ``train_step``; returns the trainer and G's parameters from before the step."""
    return _one_iteration
