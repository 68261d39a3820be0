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


def test_faces_without_inception_score_memorization_only(tiny_run, tmp_path, capsys):
    out = tmp_path / "faces.json"
    assert command.main([str(tiny_run), "--real", "faces", "--num", "20", "--no-inception", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert "fid" not in scores and scores["real_images"] == 100
    assert set(scores["memorization"]["train_to_train"]) == {"p05", "median", "p95"}
    said = capsys.readouterr().out
    assert "skipped (--no-inception)" in said and "papers use 50,000: --num-samples" in said


def test_the_default_is_the_papers_fifty_thousand_samples():
    args = command.build_parser().parse_args(["RUN", "--real", "faces"])
    assert args.num == 50_000
    assert command.build_parser().parse_args(["RUN", "--real", "faces", "--num-samples", "10"]).num == 10


def test_weights_neither_cached_nor_fetchable_are_one_line_naming_the_file_and_address(
        tiny_run, tmp_path, capsys, monkeypatch):
    """Without a connection (here: an address that cannot be read) the weights cannot be
    fetched: one line, before any sample is drawn, that says where to put which file."""
    from torchgan_sagan.metrics import inception

    monkeypatch.setenv("TORCHGAN_SAGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "INCEPTION_URL", (tmp_path / "offline" / inception.INCEPTION_FILE).as_uri())
    monkeypatch.setattr(command, "generate", lambda *a, **k: pytest.fail("samples drawn before the weights"))
    assert command.main([str(tiny_run), "--real", "faces", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    cached = tmp_path / "cache" / "inception" / inception.INCEPTION_FILE
    assert len(err) == 1 and err[0].startswith(f"evaluate: error: no Inception weights at {cached}, and fetching "
                                               f"them from {inception.INCEPTION_URL} failed")
    assert err[0].endswith(f"download {inception.INCEPTION_URL} on a connected machine and put it at {cached}, or "
                           f"pass --inception-weights FILE")


@pytest.mark.slow
def test_a_folder_is_scored_as_papers_do_with_weights_fetched_once(tiny_run, tmp_path, inception_weights,
                                                                    capsys, monkeypatch):
    """The real fetching code, reading the stand-in weights from a file:// address: they
    land in the package's cache folder; the second evaluation fetches nothing and reads
    the real images' features from the cache."""
    import torch

    from torchgan_sagan.metrics import inception

    monkeypatch.setenv("TORCHGAN_SAGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "INCEPTION_URL", inception_weights.as_uri())
    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (40, 40), color=20 * i).save(folder / f"{i}.png")
    out = tmp_path / "folder.json"
    args = [str(tiny_run), "--real", str(folder), "--num-samples", "12", "--crop", "0", "--out", str(out)]
    assert command.main(args) == 0
    assert (tmp_path / "cache" / "inception" / inception.INCEPTION_FILE).read_bytes() == \
        inception_weights.read_bytes()
    scores = json.loads(out.read_text())
    assert scores["fid"] > 0 and scores["real_images"] == 12 and scores["features"].startswith("Inception")
    assert scores["inception_score"]["mean"] >= 1 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
    assert not scores["reference_cached"]
    said = capsys.readouterr().out
    assert "FID-12 " in said and "Inception Score" in said and "precision / recall" in said
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("fetched again"))
    assert command.main(args) == 0
    again = json.loads(out.read_text())
    assert again["reference_cached"] and again["fid"] == pytest.approx(scores["fid"], rel=1e-9)


@pytest.mark.parametrize("args, message", [
    (["--real", "nowhere"], "neither digits, faces nor an existing folder"),
    (["--real", "faces", "--num", "0"], "--num must be at least 1"),
    (["--real", "faces", "--inception-weights", "missing.pth"], "no Inception weights at 'missing.pth': fetch "),
])
def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys, args, message):
    assert command.main([str(tiny_run), "--out", str(tmp_path / "x.json"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evaluate: error: ") and message in err[0]


def test_evaluating_a_run_leaves_its_training_pictures_alone(tiny_run, tmp_path):
    """RUN/nearest.png is what training's memorization check drew; evaluate draws its own."""
    training_picture = tiny_run / "nearest.png"
    training_picture.write_bytes(b"drawn at the end of training")
    assert command.main([str(tiny_run), "--real", "faces", "--num", "20", "--no-inception"]) == 0
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
    assert command.main([str(tiny_run), "--real", str(folder), "--num", "6", "--no-inception", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["real_images"] == 6
    capsys.readouterr()
    with pytest.warns(UserWarning, match="smaller than the center crop 160"):
        assert command.main([str(tiny_run), "--real", str(folder), "--num", "6", "--crop", "160", "--no-inception",
                             "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].endswith("pass a smaller --crop, --crop square or --crop 0")
