"""examples/compare_losses.py --quick end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "compare_losses.py"
VARIANTS = ["hinge", "minimax", "least_squares", "wasserstein", "wasserstein_gp", "tutorial"]


def test_quick_run_writes_every_result(tmp_path, classifier_cache, digit_classifier):
    out = tmp_path / "compare"
    env = dict(os.environ, TORCHGAN_SAGAN_CACHE=str(classifier_cache))
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "digit classifier epoch" not in result.stdout  # the cached classifier was used
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["results"]) == VARIANTS
    for variant in VARIANTS:
        r = summary["results"][variant]
        assert r["fid"]["mean"] > 0 and len(r["fid"]["per_seed"]) == 1
        assert r["curve"]["iteration"] == [6, 12]
        assert 1 <= r["classes_hit"]["mean"] <= 10
        assert (out / f"samples_{variant}.png").stat().st_size > 0
        assert (out / f"seed78_{variant}.png").stat().st_size > 0
        s78 = json.loads((out / "sevens_eights.json").read_text())["seed_scenario"]["variants"][variant]
        assert [p["iteration"] for p in s78["curve"]] == [2, 4]
        assert abs(s78["share_7"] + s78["share_8"] + s78["share_other"] - 1) < 1e-6
    assert summary["meta"]["classifier_test_accuracy"] >= 0.97
    table = (out / "results.md").read_text()
    assert "| hinge |" in table
    assert "| hinge | 4 |" in (out / "sevens_eights.md").read_text()
    assert (out / "fid_vs_iteration.png").stat().st_size > 0
