"""examples/average_vs_trained.py on tiny runs."""

import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "average_vs_trained.py"


def test_draws_both_from_the_same_noise_and_scores_them(tiny_conditional_run, tmp_path, capsys, load_script):
    out = tmp_path / "picture.png"
    assert load_script(SCRIPT).main([str(tiny_conditional_run), "--real", "digits", "--out", str(out)]) == 0
    assert out.is_file()
    rows = json.loads(out.with_suffix(".json").read_text())[str(tiny_conditional_run)]
    for name in ("trained weights", "moving average"):
        assert rows[name]["spread"] > 0 and rows[name]["verdict"]
    assert rows["average / trained spread"] == rows["moving average"]["spread"] / rows["trained weights"]["spread"]
    assert "average / trained spread" in capsys.readouterr().out


def test_a_run_without_an_average_is_a_clear_error(tiny_run, tmp_path, capsys, load_script):
    assert load_script(SCRIPT).main([str(tiny_run), "--out", str(tmp_path / "p.png")]) == 2
    assert "without a moving average (--ema)" in capsys.readouterr().err
