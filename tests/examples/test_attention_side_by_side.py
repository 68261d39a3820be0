"""examples/attention_side_by_side.py, a few iterations."""

import json
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "attention_side_by_side.py"


@pytest.mark.slow
def test_both_nets_draw_from_the_same_noise_at_each_point(tmp_path, capsys, load_script, monkeypatch):
    script = load_script(SCRIPT)
    drawn = []
    real_generate = script.generate

    def recording_generate(generator, count, seed):
        drawn.append((len(generator.attn_resolutions), seed))
        return real_generate(generator, count, seed=seed)

    monkeypatch.setattr(script, "generate", recording_generate)
    assert script.main(["--points", "1", "3", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "side_by_side.png").is_file()
    results = json.loads((tmp_path / "side_by_side.json").read_text())["results"]
    assert [p["iteration"] for p in results["with attention"]["points"]] == [1, 3]
    for name in ("with attention", "without attention"):
        assert results[name]["memorization"]["verdict"]
    # two points and the memorization check per net; one noise seed for all
    assert [a for a, _ in drawn] == [1, 1, 1, 0, 0, 0] and len({s for _, s in drawn}) == 1
    assert "memorization" in capsys.readouterr().out


def test_nonpositive_points_are_refused(tmp_path, capsys, load_script):
    assert load_script(SCRIPT).main(["--points", "0", "--out", str(tmp_path)]) == 2
    assert "--points must be positive" in capsys.readouterr().err
