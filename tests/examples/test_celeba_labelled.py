"""examples/celeba.py on labelled folders: class-conditional training from the command
line, every preset for an iteration, and generate --class (in process)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchgan_sagan import get_config, list_configs
from torchgan_sagan.data import device_batches
from torchgan_sagan.trainer.checkpoints import latest_intact_checkpoint
from torchgan_sagan.trainer.run_folder import load_generator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"class_{c}" for c in "abcdefghij"]


@pytest.fixture(scope="module")
def celeba(load_script):
    return load_script(ROOT / "examples" / "celeba.py", "celeba_labelled")


def _class_folder(root: Path, classes=NAMES, per_class: int = 2, size: int = 20) -> Path:
    """One subfolder per class; class c's images are all of gray level 20 * (c + 1), so
    that a batch's labels can be checked against its pixels."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((size, size + 4), 20 * (c + 1), np.uint8)).save(root / name / f"{i}.png")
    return root


def _level(images: torch.Tensor) -> torch.Tensor:
    """The class each image of a batch was drawn from, read back from its gray level."""
    pixels = (images.float().mean(dim=(1, 2, 3)) + 1) / 2 * 255
    return (pixels / 20).round().long() - 1


@pytest.fixture
def served(monkeypatch):
    """Every (images, labels) batch DeviceBatches serves during a run."""
    seen = []
    original = device_batches.DeviceBatches.__iter__

    def recording(self):
        for images, labels in original(self):
            seen.append((images.detach().clone(), labels.clone()))
            yield images, labels

    monkeypatch.setattr(device_batches.DeviceBatches, "__iter__", recording)
    return seen


def test_class_subfolders_train_the_conditional_digits_and_generate_draws_a_class_by_name(
        celeba, tmp_path, served, capsys):
    data = _class_folder(tmp_path / "data")
    out = tmp_path / "run"
    assert celeba.main(["--config", "sagan_cond_digits_32", "--data-root", str(data), "--step-channels", "8",
                        "--batch-size", "10", "--epochs", "1", "--sample-size", "10", "--out", str(out),
                        "--cache-dir", str(tmp_path / "cache")]) == 0
    said = capsys.readouterr().out
    assert "Training on 20 images in 10 classes" in said and "10 classes, device cpu" in said
    # The labels DeviceBatches served are those of the images beside them.
    assert len(served) >= 2 and all(torch.equal(labels, _level(images)) for images, labels in served
                                    if len(images) == 10)
    config = json.loads((out / "config.json").read_text())["fields"]
    assert config["num_classes"] == 10 and config["class_names"] == NAMES
    _, checkpoint, _ = latest_intact_checkpoint(out / "checkpoints")
    assert checkpoint["data_source"]["classes"] == NAMES
    assert checkpoint["sagan_config"]["fields"]["class_names"] == NAMES

    from torchgan_sagan import generate as command

    drawn = tmp_path / "drawn"
    assert command.main([str(out), "--class", "class_c", "--num", "4", "--interpolate", "0", "--attention", "0",
                         "--out", str(drawn)]) == 0
    generator = load_generator(out)
    z = command.noise(4, generator.encoding_dims, seed=0)
    with torch.no_grad():
        expected = generator(z, torch.full((4,), 2))  # class_c is class 2
    images = [torch.from_numpy(np.asarray(Image.open(drawn / "images" / f"{i:06d}.png"), dtype=np.float32))
              for i in range(4)]
    pixels = ((expected[:, 0] + 1) / 2).clamp(0, 1) * 255
    assert max((img[..., 0] if img.ndim == 3 else img).sub(p).abs().max() for img, p in zip(images, pixels)) <= 1
    assert command.main([str(out), "--class", "class_z", "--out", str(drawn)]) == 2
    assert "--class 'class_z' is not a class of this generator: its classes are class_a" in capsys.readouterr().err


@pytest.mark.parametrize("name", list_configs())
def test_every_preset_trains_an_iteration_from_the_command_line(celeba, name, tmp_path, capsys):
    """Each registered config at a tiny width on a generated folder with two class
    subfolders: the conditional ones with its classes, the others on all its images."""
    data = _class_folder(tmp_path / "data", classes=["cat", "dog"], per_class=1)
    out = tmp_path / "run"
    cfg = get_config(name)
    width = ["--step-channels", "8"] if cfg.backbone == "dcgan" or cfg.image_size <= 64 else ["--step-channels", "4"]
    code = celeba.main(["--config", name, "--data-root", str(data), *width, "--batch-size", "2", "--epochs", "1",
                        "--sample-size", "4", "--ncritic", "1", "--out", str(out), "--cache-dir",
                        str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    _, checkpoint, _ = latest_intact_checkpoint(out / "checkpoints")
    assert checkpoint["loss_information"]["generator_iters"] == 1
    fields = json.loads((out / "config.json").read_text())["fields"]
    if cfg.conditional:
        assert fields["num_classes"] == 2 and fields["class_names"] == ["cat", "dog"]
        assert f"{name} has {cfg.num_classes} classes; the data has 2, so it trains with 2." in captured.out
    else:
        assert fields["num_classes"] == 0 and "2 class subfolders" in captured.out


@pytest.mark.parametrize("args, message", [
    ([], "has images outside class subfolders: a class-conditional config needs one subfolder per class"),
    (["--num-classes", "3"], "has images outside class subfolders"),
    (["--labels", "missing.csv"], "labels file 'missing.csv' does not exist"),
])
def test_a_conditional_config_on_a_flat_folder_is_one_line(celeba, tmp_path, capsys, args, message, monkeypatch):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 9 * i, np.uint8)).save(flat / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    assert celeba.main(["--config", "sagan_cond_digits_32", "--data-root", str(flat), *args,
                        "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("celeba.py: error: ")


def test_a_num_classes_that_is_not_the_datas_is_one_line(celeba, tmp_path, capsys):
    data = _class_folder(tmp_path / "data", classes=["cat", "dog", "emu"], per_class=1)
    assert celeba.main(["--config", "sagan_32", "--num-classes", "5", "--data-root", str(data), "--step-channels",
                        "8", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("celeba.py: error: --num-classes 5, but the data has 3 classes (cat, dog, emu); drop "
                   "--num-classes to take the data's")


def test_a_labels_file_gives_classes_to_a_flat_folder_and_a_resume_keeps_them(celeba, tmp_path, capsys, served):
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["file,class"]
    for i in range(9):
        c = i % 3
        Image.fromarray(np.full((8, 8), 20 * (c + 1), np.uint8)).save(flat / f"{i}.png")
        if i < 8:  # the last image has no label
            rows.append(f"{i}.png,{c}")
    (tmp_path / "labels.csv").write_text("\n".join(rows + ["gone.png,1"]) + "\n")
    out = tmp_path / "run"
    common = ["--data-root", str(flat), "--labels", str(tmp_path / "labels.csv"), "--step-channels", "8",
              "--batch-size", "4", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-image-cache",
              "--num-workers", "0"]
    assert celeba.main(["--config", "sagan_32", "--image-channels", "1", "--epochs", "1", *common]) == 0
    said = capsys.readouterr().out
    assert "1 image(s) in" in said and "have no class" in said and "1 file(s) named in" in said
    assert all(torch.equal(labels, _level(images)) for images, labels in served)  # the DataLoader path
    assert json.loads((out / "config.json").read_text())["fields"]["class_names"] == ["0", "1", "2"]
    # A resume reads the classes again; other classes are refused.
    assert celeba.main(["--resume", "--epochs", "2", *common]) == 0
    (tmp_path / "labels.csv").write_text("file,class\n0.png,0\n1.png,1\n2.png,3\n3.png,0\n4.png,1\n5.png,3\n")
    assert celeba.main(["--resume", "--epochs", "3", *common]) == 2
    assert "--resume: the run trained on 3 classes (0, 1, 2), and this data has 4" in capsys.readouterr().err


def test_a_conditional_config_without_a_folder_trains_on_the_embedded_digits(celeba, tmp_path, capsys, served):
    out = tmp_path / "run"
    assert celeba.main(["--config", "sagan_cond_digits_32", "--max-images", "20", "--step-channels", "8",
                        "--batch-size", "10", "--epochs", "1", "--sample-size", "10", "--out", str(out)]) == 0
    assert "training on the embedded digits" in capsys.readouterr().out
    labels = torch.cat([labels for _, labels in served])
    assert labels.unique().numel() > 1  # the digits' own classes, not zeros


def test_max_images_keeps_every_class(celeba, tmp_path, served, capsys):
    """--max-images on class subfolders keeps a share of each class: the first five images
    of these sorted files would all be class_a's."""
    data = _class_folder(tmp_path / "data", NAMES[:5], per_class=3)
    assert celeba.main(["--config", "sagan_cond_digits_32", "--data-root", str(data), "--max-images", "5",
                        "--step-channels", "8", "--batch-size", "5", "--epochs", "1", "--sample-size", "5",
                        "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "Training on 5 images in 5 classes" in capsys.readouterr().out
    labels = torch.cat([labels for _, labels in served])
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3, 4]
