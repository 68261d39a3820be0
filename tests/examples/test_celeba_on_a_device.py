"""examples/celeba.py's whole program on a device that is not the CPU: data, the
training loop, checkpoints, a resume, the final pictures and the memorization check,
with every tensor of the run on the ``standin`` device of ``tests/standin_device.py``,
which refuses mixed devices as CUDA does (see that module for what it cannot see:
the branches taken only on CUDA, and anything asynchronous)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "standin_device.py"
SCRIPT = ROOT / "examples" / "celeba.py"


def _on_the_device(*args, cwd):
    result = subprocess.run([sys.executable, str(HARNESS), str(SCRIPT), "--device", "standin", *map(str, args)],
                            cwd=cwd, capture_output=True, text=True, timeout=600)
    found = re.search(r"standin: (\d+) operations on the device", result.stderr)
    return result, int(found.group(1)) if found else 0


@pytest.fixture
def folder(tmp_path):
    """Twelve 80x96 JPEGs."""
    root = tmp_path / "images"
    root.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(12):
        Image.fromarray((torch.rand(96, 80, 3, generator=gen) * 255).to(torch.uint8).numpy()).save(root / f"{i}.jpg")
    return root


def _common(folder, tmp_path, *flags):
    return ["--data-root", folder, "--crop", 0, "--batch-size", 4, "--step-channels", 8, "--out", tmp_path / "run",
            "--cache-dir", tmp_path / "cache", *flags]


def _pictures_and_checkpoints(out: Path, count: int):
    for picture in ("samples/final.png", "real_vs_fake.png", "attention.png", "nearest.png"):
        assert (out / picture).stat().st_size > 0, picture
    checkpoints = sorted((out / "checkpoints").glob("gan*.model"))
    assert len(checkpoints) == count
    return checkpoints


def test_the_whole_program_runs_and_resumes_on_a_device(folder, tmp_path):
    """From the image cache (uint8 images on the device, as on a GPU)."""
    first, operations = _on_the_device(*_common(folder, tmp_path), "--epochs", 1, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert operations > 1000  # the nets trained there, not on the CPU
    assert "Memorization check (12 training images)" in first.stdout
    resumed, operations = _on_the_device(*_common(folder, tmp_path), "--epochs", 2, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming at epoch 2 of 2" in resumed.stdout and operations > 1000
    newest = torch.load(_pictures_and_checkpoints(tmp_path / "run", 2)[-1], weights_only=False, map_location="cpu")
    assert newest["epoch"] == 2 and newest["loss_information"]["generator_iters"] == 6


def test_the_whole_program_runs_on_a_device_from_a_dataloader(folder, tmp_path):
    """--no-image-cache: batches decoded on the CPU, copied to the device by the loop."""
    result, operations = _on_the_device(*_common(folder, tmp_path, "--no-image-cache"), "--epochs", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert operations > 1000 and "Memorization check (12 training images)" in result.stdout
    _pictures_and_checkpoints(tmp_path / "run", 1)
