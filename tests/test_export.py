"""python -m torchgan_sagan.export: the file runs in plain PyTorch and gives the
generator's images."""

import subprocess
import sys

import pytest
import torch

from torchgan_sagan import export as command
from torchgan_sagan.trainer.run_folder import load_generator

CHECK = """
import sys, torch
G = torch.export.load(sys.argv[1]).module()
z = torch.load(sys.argv[2])
images = G(z["z"]) if z["labels"] is None else G(z["z"], z["labels"])
assert "torchgan_sagan" not in sys.modules and "torchgan" not in sys.modules
torch.save(images, sys.argv[3])
"""


def _exported_equals_generator(run, tmp_path, labels=None):
    out = tmp_path / "G.pt2"
    assert command.main([str(run), "--out", str(out)]) == 0
    program = torch.export.load(str(out))
    assert not any("parametrizations" in key for key in program.state_dict)  # spectral norm folded in
    generator = load_generator(run)
    z = torch.randn(5, generator.encoding_dims)
    torch.save({"z": z, "labels": labels}, tmp_path / "inputs.pt")
    result = subprocess.run([sys.executable, "-c", CHECK, str(out), str(tmp_path / "inputs.pt"),
                             str(tmp_path / "images.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = generator(z) if labels is None else generator(z, labels)
    assert torch.allclose(torch.load(tmp_path / "images.pt"), expected, atol=1e-5)


@pytest.mark.slow
def test_exported_generator_runs_without_this_package(tiny_run, tmp_path):
    _exported_equals_generator(tiny_run, tmp_path)


@pytest.mark.slow
def test_exported_conditional_average_generator(tiny_conditional_run, tmp_path):
    _exported_equals_generator(tiny_conditional_run, tmp_path, labels=torch.tensor([0, 3, 9, 9, 1]))


def test_spectral_norm_is_folded_into_the_weights():
    from torchgan_sagan import SAGANGenerator
    from torchgan_sagan.export import fold_spectral_norm
    from torchgan_sagan.layers import spectral_norm_of

    generator = SAGANGenerator(16, 16, 1, 16, ema_decay=0.9).train()
    z = torch.randn(3, 16)
    folded = fold_spectral_norm(generator)
    assert not any(spectral_norm_of(m) for m in folded.modules()) and not folded.training
    assert not any("original" in key for key in folded.state_dict())
    assert sum(spectral_norm_of(m) is not None for m in generator.modules()) > 4  # left as it was
    assert generator.training
    with torch.no_grad():
        assert torch.allclose(folded(z), generator.eval()(z), atol=1e-6)


def test_bad_output_name(tiny_run, tmp_path, capsys):
    assert command.main([str(tiny_run), "--out", str(tmp_path / "G.onnx")]) == 2
    assert "torch.export files end in .pt2" in capsys.readouterr().err
