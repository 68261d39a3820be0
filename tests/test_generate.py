"""python -m torchgan_sagan.generate on tiny trained runs."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from torchgan_sagan import generate as command
from torchgan_sagan.metrics.sampling import interpolation_noise, noise, slerp


@pytest.mark.slow
def test_end_to_end_in_a_subprocess(tiny_run, tmp_path):
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "torchgan_sagan.generate", str(tiny_run), "--num", "5",
                             "--out", str(out), "--interpolate", "4", "--rows", "2", "--attention", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(out / "images" / "000000.png").size == (32, 32)
    for name in ("grid.png", "interpolation.png", "attention.png"):
        assert (out / name).stat().st_size > 0
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 2 * 4 - 2  # there and back


def test_seeded_and_reproducible(tiny_run, tmp_path):
    for name in ("a", "b"):
        assert command.main([str(tiny_run), "--num", "3", "--out", str(tmp_path / name), "--interpolate", "0",
                             "--attention", "0", "--truncation", "0.5"]) == 0
    for i in range(3):
        assert (tmp_path / "a" / "images" / f"{i:06d}.png").read_bytes() == \
            (tmp_path / "b" / "images" / f"{i:06d}.png").read_bytes()


def test_beside_draws_other_runs_from_the_same_noise(tiny_run, tmp_path, monkeypatch, capsys):
    drawn = []
    monkeypatch.setattr(command, "side_by_side_figure", lambda panels, path: drawn.append((panels, path)))
    assert command.main([str(tiny_run), "--num", "70", "--out", str(tmp_path / "g"), "--interpolate", "0",
                         "--attention", "0", "--beside", str(tiny_run)]) == 0
    (panels, path), = drawn
    assert path == tmp_path / "g" / "beside.png" and "beside.png" in capsys.readouterr().out
    assert [title for title, _ in panels] == [tiny_run.name, tiny_run.name]
    assert panels[0][1].shape == (64, 1, 32, 32)  # the first 64 of the 70
    assert torch.equal(panels[0][1], panels[1][1])  # one generator, one noise: one picture


def test_beside_a_run_with_other_inputs_is_a_clear_error(tiny_run, tiny_conditional_run, tmp_path, capsys):
    assert command.main([str(tiny_run), "--num", "2", "--out", str(tmp_path / "g"), "--interpolate", "0",
                         "--attention", "0", "--beside", str(tiny_conditional_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("generate: error: --beside") and "10 classes" in err and "can share noise" in err
    assert not (tmp_path / "g").exists()  # refused before anything was drawn or written


def test_conditional_runs_draw_one_class_per_row(tiny_conditional_run, tmp_path):
    out = tmp_path / "cond"
    assert command.main([str(tiny_conditional_run), "--num", "4", "--out", str(out), "--classes", "2", "7",
                         "--per-class", "3", "--interpolate", "3", "--rows", "2", "--attention", "1"]) == 0
    grid = Image.open(out / "classes.png")
    assert grid.size == (2 + 3 * 34, 2 + 2 * 34)  # 3 columns, 2 rows of 32x32 with padding 2


@pytest.mark.parametrize("args, message", [
    (["--num", "0"], "--num must be at least 1, got 0"),
    (["--classes", "3"], "--class given, but this generator is unconditional"),
    (["--interpolate", "1"], "--interpolate needs at least 2 steps"),
    (["--truncation", "-1"], "truncation must be a positive number"),
    (["--device", "cuda:9"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, args, message):
    assert command.main([str(tiny_run), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("generate: error: ") and message in err[0]


def test_missing_path_foreign_file_and_class_out_of_range(tiny_conditional_run, tmp_path, capsys):
    assert command.main([str(tmp_path / "missing")]) == 2
    (tmp_path / "foreign.model").write_bytes(b"not a checkpoint")
    assert command.main([str(tmp_path / "foreign.model")]) == 2
    assert command.main([str(tiny_conditional_run), "--classes", "10", "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "does not exist" in lines[0] and "truncated or corrupt" in lines[1]
    assert "--class '10' is not a class of this generator: it has classes 0 to 9" in lines[2]


def test_noise_truncation_and_slerp():
    z = noise(200, 16, seed=3, truncation=0.5)
    assert z.abs().max() <= 0.5 and torch.equal(z, noise(200, 16, seed=3, truncation=0.5))
    a, b = torch.randn(8), torch.randn(8)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    assert interpolation_noise(8, rows=3, steps=4).shape == (12, 8)
