"""benchmarks/loader.py at a tiny size: it ends with its one-line summary."""

import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loader.py"


@pytest.mark.slow
def test_makes_images_and_reports_both_paths(tmp_path, capsys, load_script):
    args = ["--data-root", str(tmp_path / "jpegs"), "--make", "60", "--batch", "8", "--batches", "3",
            "--workers", "1", "--cache-dir", str(tmp_path / "cache")]
    assert load_script(SCRIPT).main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"loader: cached \d+ img/s, PIL \d+ img/s \([\d.]+ x\), cache build [\d.]+ s, reuse [\d.]+ s",
                        last), last
    assert len(list((tmp_path / "jpegs").glob("*.jpg"))) == 60


def test_too_few_images_is_a_clear_error(tmp_path, capsys, load_script):
    (tmp_path / "empty").mkdir()
    assert load_script(SCRIPT).main(["--data-root", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
