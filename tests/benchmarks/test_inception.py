"""benchmarks/inception.py at a tiny size: both networks, their ratio, equal features."""

import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "inception.py"


@pytest.mark.slow
def test_times_both_networks_on_the_same_images(tmp_path, capsys, load_script):
    pytest.importorskip("torch_fidelity")
    out = tmp_path / "inception.json"
    assert load_script(SCRIPT).main(["--batch", "2", "--size", "16", "--repeats", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert re.search(r"\| torch-fidelity's \| [\d.]+ \| 1\.00x \|", said) and re.search(r"\| ours \| [\d.]+ \|", said)
    record = json.loads(out.read_text())
    assert set(record["images_per_s"]) == {"torch-fidelity's", "ours"} and record["difference"] < 1e-4


def test_a_missing_weights_file_is_a_clear_error(tmp_path, capsys, load_script):
    with pytest.raises(SystemExit) as exit_:
        load_script(SCRIPT).main(["--weights", str(tmp_path / "missing.pth")])
    assert exit_.value.code == 2 and "no weights file at" in capsys.readouterr().err
