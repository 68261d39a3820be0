"""python -m torchgan_sagan.evaluate on tiny trained runs."""

import json
import os
import subprocess
import sys

import pytest
import torch
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
    assert "FID" in result.stdout and "class accuracy" in result.stdout and "coverage by class" in result.stdout
    assert list(scores["per_class"]) == [str(i) for i in range(10)]  # in the digit classifier's features
    assert all(0 <= c["coverage"] <= 1 and c["samples"] == 6 for c in scores["per_class"].values())
    assert Image.open(tmp_path / "scores_nearest.png").size[1] > 32  # samples over their nearest digits


def test_faces_without_inception_score_memorization_only(tiny_run, tmp_path, capsys):
    out = tmp_path / "faces.json"
    assert command.main([str(tiny_run), "--real", "faces", "--num", "20", "--no-inception", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert "fid" not in scores and scores["real_images"] == 100
    assert set(scores["memorization"]["train_to_train"]) == {"p05", "median", "p95"}
    said = capsys.readouterr().out
    assert "skipped (--no-inception)" in said and "20 / 100 (for the memorization check)" in said


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


def _class_folder(root, classes, per_class=4, size=36):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (size, size), color=30 * c + 5 * i).save(root / name / f"{i}.png")
    return root


def test_a_labelled_folders_classes_are_matched_to_the_runs_by_name_and_spread(tiny_conditional_run, tmp_path):
    """The run's classes are 0 to 9 by name: a folder's "3" is class 3 whatever its place
    among the subfolders, a class the run lacks is -1, and --max-real keeps a share of
    every class (the first images alone would be one class's)."""
    from torchgan_sagan.trainer.run_folder import load_generator

    generator = load_generator(tiny_conditional_run)
    folder = _class_folder(tmp_path / "real", ["3", "7", "zebra"])
    said = []
    images, labels = command.real_images(str(folder), generator, max_real=6, crop=0, say=said.append)
    assert images.shape == (6, 1, 32, 32) and not said
    assert labels.tolist() == [3, 3, 7, 7, -1, -1]
    assert command.class_names(generator) == [str(i) for i in range(10)]


def test_an_unlabelled_folder_or_unconditional_run_says_why_there_is_no_per_class_coverage(
        tiny_run, tiny_conditional_run, tmp_path, capsys):
    from torchgan_sagan.trainer.run_folder import load_generator

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("L", (36, 36), color=50 * i).save(flat / f"{i}.png")
    said = []
    _, labels = command.real_images(str(flat), load_generator(tiny_conditional_run), crop=0, say=said.append)
    assert labels is None and said == [f"Per-class coverage skipped: {flat} has images outside class subfolders "
                                       f"(give --labels FILE)."]
    said.clear()
    other = _class_folder(tmp_path / "other", ["cat", "dog"])
    _, labels = command.real_images(str(other), load_generator(tiny_conditional_run), crop=0, say=said.append)
    assert labels is None and said[0].startswith("Per-class coverage skipped: none of the folder's classes (cat, dog)")
    (tmp_path / "labels.csv").write_text("0.png,cat\n")
    capsys.readouterr()
    assert command.main([str(tiny_run), "--real", str(flat), "--labels", str(tmp_path / "labels.csv"),
                         "--no-inception", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["evaluate: error: --labels: this run is unconditional; per-class coverage needs a "
                   "class-conditional run"]


@pytest.mark.slow
def test_a_conditional_run_on_a_labelled_folder_gets_each_classs_coverage_by_name(
        tiny_conditional_run, tmp_path, inception_weights, capsys):
    folder = _class_folder(tmp_path / "real", ["0", "1", "unknown"], per_class=6)
    out = tmp_path / "cond.json"
    assert command.main([str(tiny_conditional_run), "--real", str(folder), "--num-samples", "40", "--crop", "0",
                         "--inception-weights", str(inception_weights), "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert 0 <= scores["coverage"] <= 1 and scores["density"] >= 0
    per_class = scores["per_class"]
    assert list(per_class) == [str(i) for i in range(10)]
    assert per_class["0"]["real"] == 6 and per_class["0"]["samples"] == 4 and per_class["1"]["k"] == 5
    assert all(per_class[str(i)] is None for i in range(2, 10))  # no real images of theirs
    said = capsys.readouterr().out
    assert "density / coverage" in said and "coverage by class" in said and "8 not scored" in said


class _TinyExtractor(torch.nn.Module):
    """Inception's outputs (pool features, logits) from a fixed projection of 4x4
    means: the evaluation's bookkeeping at a fraction of the network's cost."""

    def __init__(self, weights_path):
        super().__init__()
        self.project = torch.nn.Linear(16 * 3, 2048 + 1008)
        self.weights_path = weights_path

    def forward(self, images):
        small = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
        out = self.project(small)
        return out[:, :2048], out[:, 2048:]


def test_the_inception_scores_keep_the_samples_features_not_their_images(tmp_path, monkeypatch, watch_outputs):
    """50,000 samples of 128x128 RGB are 9.8 GB: only a batch of images is alive at once,
    and the first MEMORIZATION_SAMPLES (1,000; 100 here) stay for the memorization check."""
    from torchgan_sagan import SAGANGenerator
    from torchgan_sagan.metrics import standard
    from torchgan_sagan.metrics.sampling import generate

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in")
    torch.manual_seed(0)
    monkeypatch.setattr(command, "MEMORIZATION_SAMPLES", 100)
    monkeypatch.setattr(standard, "inception_extractor", lambda path, device: _TinyExtractor(weights))
    g = SAGANGenerator(8, 16, 1, 8)
    outputs = watch_outputs(g)
    real = torch.rand(30, 1, 16, 16) * 2 - 1
    result, fake = command.evaluate_generator(g, real, None, kind="images", num_samples=150, seed=5,
                                              inception_weights=weights, batch_size=5, cache_dir=tmp_path)
    assert outputs["calls"] == 30 and outputs["most"] <= 3  # all 30 batches drawn, never more than a few held
    assert result["samples"] == 150 and result["fid"] > 0 and 0 <= result["recall"] <= 1
    assert len(fake) == command.MEMORIZATION_SAMPLES == 100
    assert torch.allclose(fake, generate(g, command.MEMORIZATION_SAMPLES, seed=5, batch_size=5), atol=1e-6)
    assert len(result["memorization"]["indices"]) == command.MEMORIZATION_SAMPLES


def test_without_inception_only_the_memorization_checks_samples_are_drawn(tiny_run, tmp_path, capsys,
                                                                          monkeypatch):
    from torchgan_sagan.metrics.sampling import generate

    drawn = []
    monkeypatch.setattr(command, "generate", lambda g, n, **k: drawn.append(n) or generate(g, n, **k))
    assert command.main([str(tiny_run), "--real", "faces", "--no-inception", "--out", str(tmp_path / "e.json")]) == 0
    assert drawn == [command.MEMORIZATION_SAMPLES]  # not the default 50,000
    assert "1,000 / 100 (for the memorization check)" in capsys.readouterr().out
