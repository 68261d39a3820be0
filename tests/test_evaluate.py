"""python -m torchgan_sagan.evaluate on tiny trained runs."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from torchgan_sagan import evaluate as command


@pytest.mark.slow
def test_digits_end_to_end_in_a_subprocess(tiny_conditional_run, tmp_path, classifier_cache, digit_classifier):
    out = tmp_path / "scores.json"
    env = dict(os.environ, TORCHGAN_SAGAN_CACHE=str(classifier_cache))
    result = subprocess.run([sys.executable, "-m", "torchgan_sagan.evaluate", str(tiny_conditional_run),
                             "--real", "digits", "--num", "60", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["fid"] > 0 and set(scores["kid"]) == {"mean", "std"}
    assert 1 <= scores["classes_hit"] <= 10 and 0 <= scores["class_accuracy"] <= 1
    assert scores["memorization"]["median_ratio"] > 0 and len(scores["memorization"]["indices"]) == 60
    assert "FID" in result.stdout and "class accuracy" in result.stdout
    assert Image.open(tmp_path / "scores_nearest.png").size[1] > 32  # samples over their nearest digits


def test_faces_without_inception_weights_score_memorization_only(tiny_run, tmp_path, capsys):
    out = tmp_path / "faces.json"
    assert command.main([str(tiny_run), "--real", "faces", "--num", "20", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert "fid" not in scores and scores["real_images"] == 100
    assert set(scores["memorization"]["train_to_train"]) == {"p05", "median", "p95"}
    assert "skipped: pass --inception-weights" in capsys.readouterr().out


@pytest.mark.slow
def test_a_folder_of_images_with_inception_weights(tiny_run, tmp_path, inception_weights):
    weights = inception_weights
    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(6):
        Image.new("L", (40, 40), color=40 * i).save(folder / f"{i}.png")
    out = tmp_path / "folder.json"
    assert command.main([str(tiny_run), "--real", str(folder), "--num", "6", "--crop", "0",
                         "--inception-weights", str(weights), "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["fid"] >= 0 and scores["real_images"] == 6 and scores["features"].startswith("Inception")


@pytest.mark.parametrize("args, message", [
    (["--real", "nowhere"], "neither digits, faces nor an existing folder"),
    (["--real", "faces", "--num", "0"], "--num must be at least 1"),
    (["--real", "faces", "--inception-weights", "missing.pth"], "--inception-weights: no file"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, args, message):
    assert command.main([str(tiny_run), "--out", str(tmp_path / "x.json"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evaluate: error: ") and message in err[0]


def test_evaluating_a_run_leaves_its_training_pictures_alone(tiny_run, tmp_path):
    """RUN/nearest.png is what training's memorization check drew; evaluate draws its own."""
    training_picture = tiny_run / "nearest.png"
    training_picture.write_bytes(b"drawn at the end of training")
    assert command.main([str(tiny_run), "--real", "faces", "--num", "20"]) == 0
    assert training_picture.read_bytes() == b"drawn at the end of training"
    assert Image.open(tiny_run / "evaluation_nearest.png").size[0] > 32


def test_a_folder_of_small_images_is_cropped_to_its_squares_by_default(tiny_run, tmp_path, capsys):
    """CelebA's crop of 160 is the default only for CelebA's folder: 40x48 images are not
    padded to it, and asking for it anyway is one line, not a traceback."""
    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(6):
        Image.new("L", (40, 48), color=40 * i).save(folder / f"{i}.png")
    out = tmp_path / "small.json"
    assert command.main([str(tiny_run), "--real", str(folder), "--num", "6", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["real_images"] == 6
    capsys.readouterr()
    with pytest.warns(UserWarning, match="smaller than the center crop 160"):
        assert command.main([str(tiny_run), "--real", str(folder), "--num", "6", "--crop", "160", "--out",
                             str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].endswith("pass a smaller --crop, --crop square or --crop 0")
