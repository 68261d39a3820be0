import os

import pytest
import torch
import torchgan.logging.visualize as visualize
import torchgan.trainer.base_trainer as base_trainer
import torchvision
from torch.optim import Adam
from torchgan.trainer import Trainer
from torchgan.trainer.base_trainer import BaseTrainer

import torchgan_sagan
from torchgan_sagan import (
    HingeDiscriminatorLoss,
    HingeGeneratorLoss,
    SAGANDiscriminator,
    SAGANGenerator,
    apply_torchgan_fixes,
)
from torchgan_sagan.trainer.torchgan_fixes import _load_model


def _network_params():
    return {
        "generator": {
            "name": SAGANGenerator,
            "args": {"encoding_dims": 8, "out_size": 16, "out_channels": 3, "step_channels": 8},
            "optimizer": {"name": Adam, "args": {"lr": 1e-4, "betas": (0.0, 0.9)}},
        },
        "discriminator": {
            "name": SAGANDiscriminator,
            "args": {"in_size": 16, "in_channels": 3, "step_channels": 8},
            "optimizer": {"name": Adam, "args": {"lr": 4e-4, "betas": (0.0, 0.9)}},
        },
    }


def _trainer(tmp_path, epochs):
    return Trainer(
        _network_params(),
        [HingeGeneratorLoss(), HingeDiscriminatorLoss()],
        device=torch.device("cpu"),
        epochs=epochs,
        sample_size=4,
        checkpoints=str(tmp_path / "ckpt" / "gan"),
        recon=str(tmp_path / "images"),
        log_dir=str(tmp_path / "logs"),
    )


def _loader(dataset):
    return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)


def test_fixes_are_idempotent_and_scoped():
    views = (visualize.torchvision, base_trainer.torch, BaseTrainer.load_model)
    apply_torchgan_fixes()
    apply_torchgan_fixes()
    assert (visualize.torchvision, base_trainer.torch, BaseTrainer.load_model) == views
    assert BaseTrainer.load_model is _load_model
    # torchvision and torch themselves are untouched; only torchgan's modules see views.
    assert "range" not in torchvision.utils.make_grid.__code__.co_varnames
    assert torchvision.utils.make_grid.__module__ == "torchvision.utils"
    assert torch.save.__module__ == "torch.serialization"
    assert visualize.torchvision is not torchvision and visualize.torchvision.utils is not torchvision.utils


def test_make_grid_view_takes_the_old_range_argument():
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    old = visualize.torchvision.utils.make_grid(images, nrow=2, normalize=True, range=(-1, 1))
    new = torchvision.utils.make_grid(images, nrow=2, normalize=True, value_range=(-1, 1))
    assert torch.equal(old, new)
    with pytest.raises(TypeError):
        torchvision.utils.make_grid(images, range=(-1, 1))


def test_one_trainer_epoch_writes_samples_logs_and_a_checkpoint(tmp_path, tiny_images):
    trainer = _trainer(tmp_path, epochs=1)
    trainer(_loader(tiny_images))
    assert (tmp_path / "images" / "epoch1_generator.png").stat().st_size > 0
    assert (tmp_path / "ckpt" / "gan0.model").is_file()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "logs"))
    assert trainer.loss_information["generator_iters"] == 2
    # no temporary file is left beside the checkpoint
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["gan0.model"]


def test_save_load_and_resume_one_more_epoch(tmp_path, tiny_images):
    first = _trainer(tmp_path, epochs=1)
    first(_loader(tiny_images))
    weights = {k: v.clone() for k, v in first.generator.state_dict().items()}

    resumed = _trainer(tmp_path, epochs=2)
    resumed.load_model(str(tmp_path / "ckpt" / "gan0.model"))
    assert resumed.start_epoch == 1
    assert resumed.loss_information["generator_iters"] == 2
    for k, v in resumed.generator.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert isinstance(resumed.losses["HingeGeneratorLoss"], HingeGeneratorLoss)

    resumed(_loader(tiny_images))
    assert resumed.loss_information["generator_iters"] == 4  # exactly one more epoch
    # the epoch-1 samples and checkpoint survive; epoch 2 goes next to them
    assert (tmp_path / "images" / "epoch1_generator.png").is_file()
    assert (tmp_path / "images" / "epoch2_generator.png").is_file()
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["gan0.model", "gan1.model"]
    second = torch.load(tmp_path / "ckpt" / "gan1.model", weights_only=False)
    assert second["epoch"] == 2
    assert any(
        not torch.equal(v, weights[k]) for k, v in resumed.generator.state_dict().items()
    )


def test_epochs_is_a_total_so_an_equal_total_trains_nothing(tmp_path, tiny_images):
    _trainer(tmp_path, epochs=1)(_loader(tiny_images))
    again = _trainer(tmp_path, epochs=1)
    again.load_model(str(tmp_path / "ckpt" / "gan0.model"))
    again(_loader(tiny_images))
    assert again.loss_information["generator_iters"] == 2


def test_load_model_missing_file_is_file_not_found(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        trainer.load_model(str(tmp_path / "nope.model"))


def test_load_model_names_what_a_foreign_file_lacks(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    path = tmp_path / "weights.pt"
    torch.save({"generator": trainer.generator.state_dict()}, path)
    with pytest.raises(ValueError, match=r"not a torchgan Trainer checkpoint: it lacks \['epoch'"):
        trainer.load_model(str(path))


def test_load_items_are_restored_by_name(tmp_path, tiny_images):
    trainer = _trainer(tmp_path, epochs=1)
    trainer.note = "kept"
    trainer(_loader(tiny_images), save_items="note")
    fresh = _trainer(tmp_path, epochs=1)
    fresh.load_model(str(tmp_path / "ckpt" / "gan0.model"), load_items="note")
    assert fresh.note == "kept"


def test_package_exports():
    for name in torchgan_sagan.__all__:
        assert hasattr(torchgan_sagan, name)


def test_without_the_image_fix_the_first_epoch_fails(tmp_path, tiny_images, monkeypatch):
    """Control: torchgan's own image logging breaks on this torchvision."""
    monkeypatch.setattr(visualize, "torchvision", torchvision)
    trainer = _trainer(tmp_path, epochs=1)
    with pytest.raises(TypeError, match="range"):
        trainer(_loader(tiny_images))


def test_plain_torch_load_refuses_torchgan_checkpoints(tmp_path, tiny_images):
    """Control: torch.load's weights_only default is what broke torchgan's load_model."""
    _trainer(tmp_path, epochs=1)(_loader(tiny_images))
    with pytest.raises(Exception, match="weights_only"):
        torch.load(tmp_path / "ckpt" / "gan0.model")


def test_gradient_logging_reads_once_per_net_and_logs_the_same_sum(monkeypatch, tmp_path):
    import torchgan.logging.visualize as visualize

    from torchgan_sagan import SAGANGenerator
    from torchgan_sagan.trainer.torchgan_fixes import _update_grads

    net = SAGANGenerator(8, 16, 1, 8)
    net(torch.randn(4, 8)).pow(2).mean().backward()
    expected = sum(float((p.grad.double() ** 2).sum()) for p in net.parameters() if p.grad is not None)
    viz = visualize.GradientVisualize(["generator"], log_dir=str(tmp_path))  # not ./runs
    viz.logs["generator"] = [0.0]
    reads = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(1) or real_float(t))
    monkeypatch.setattr(torch.Tensor, "item", lambda t: pytest.fail("one .item() per parameter"))
    _update_grads(viz, "generator", net)
    assert len(reads) == 1 and viz.logs["generator"][0] == pytest.approx(expected, rel=1e-6)
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())  # zero_grad as before
    assert visualize.GradientVisualize.update_grads is _update_grads  # installed on import
