"""examples/compare_losses.py --quick end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: End-to-end runs of an example script: the slow tier.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "compare_losses.py"
#: The package's two loss pairs and torchgan's tutorial network; torchgan's own losses
#: (minimax, clipped Wasserstein, WGAN-GP) train in tests/recipe/test_presets.py and
#: tests/models/test_resnet.py, so the end-to-end run skips them to stay short.
VARIANTS = ["hinge", "tutorial"]  # this package's losses and nets, and torchgan's tutorial network


def test_quick_run_writes_every_result(tmp_path, classifier_cache, digit_classifier):
    out = tmp_path / "compare"
    env = dict(os.environ, TORCHGAN_SAGAN_CACHE=str(classifier_cache))
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--variants", *VARIANTS],
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
        assert (out / f"sevens_eights_{variant}.png").stat().st_size > 0
        s78 = json.loads((out / "sevens_eights.json").read_text())["seed_scenario"]["variants"][variant]
        assert [p["iteration"] for p in s78["curve"]] == [2, 4]
        assert abs(s78["share_7"] + s78["share_8"] + s78["share_other"] - 1) < 1e-6
    assert summary["meta"]["classifier_test_accuracy"] >= 0.97
    table = (out / "results.md").read_text()
    assert "| hinge |" in table
    assert "| hinge | 4 |" in (out / "sevens_eights.md").read_text()
    assert (out / "fid_vs_iteration.png").stat().st_size > 0




def test_variant_options_set_config_fields(load_script):
    harness = load_script(SCRIPT)  # its logging switches stay inside
    assert harness.parse_variant("hinge+cl+ema") == ("hinge", {"channels_last": True, "ema_decay": 0.995,
                                                               "ema_start": 200})
    cfg = harness.build_config("tutorial-ours+dropin", 32, 16)
    assert (cfg.attn_layout, cfg.image_size, cfg.g_attn_resolutions, cfg.loss) == ("torchgan", 32, (8, 16),
                                                                                    "wasserstein")
    cond = harness.build_config("cond+diffaug", 32, 16)
    assert (cond.num_classes, cond.diffaugment) == (10, "color,translation,cutout")
    assert harness.build_config("hinge+unfused", 32, 16).attn_fused == "off"
    ls = harness.build_config("least_squares+d2", 32, 16)
    assert (ls.loss, ls.ncritic, ls.g_lr) == ("least_squares", 2, 4e-4)
    placements = {tag: harness.build_config(f"least_squares+{tag}", 32, 16) for tag in
                  ("noattn", "gattn", "dattn", "attn8", "attn2", "resnet+noattn")}
    assert {tag: (c.g_attn_resolutions, c.d_attn_resolutions) for tag, c in placements.items()} == {
        "noattn": ((), ()), "gattn": ((16,), ()), "dattn": ((), (16,)), "attn8": ((8,), (8,)),
        "attn2": ((8, 16), (8, 16)), "resnet+noattn": ((), ())}
    assert placements["resnet+noattn"].backbone == "resnet"


def test_bad_variants_exit_with_a_message(capsys, load_script):
    harness = load_script(SCRIPT)  # its logging switches stay inside
    assert harness.main(["--variants", "hinge+fast"]) == 2
    assert "unknown tag +fast in 'hinge+fast'" in capsys.readouterr().err
    assert harness.main(["--variants", "tutorial+cl"]) == 2
    assert "takes no options" in capsys.readouterr().err


def test_equal_wall_clock_scores_every_variant_at_the_first_ones_training_time(tmp_path, classifier_cache,
                                                                                digit_classifier, monkeypatch, load_script):
    monkeypatch.setenv("TORCHGAN_SAGAN_CACHE", str(classifier_cache))
    harness = load_script(SCRIPT)  # its logging switches stay inside
    out = tmp_path / "eq"
    assert harness.main(["--quick", "--scenario", "digits", "--variants", "hinge", "hinge+unfused",
                         "--equal-time", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    budget = results["hinge"]["train_seconds"]["mean"]
    assert results["hinge"]["at_budget"]["iteration"]["mean"] == 12  # the reference: its own iterations
    other = results["hinge+unfused"]["at_budget"]
    assert other["train_seconds"]["mean"] >= budget and other["iteration"]["mean"] >= 1
    assert results["hinge+unfused"]["seconds_per_iteration"]["mean"] > 0
    assert "At an equal wall-clock budget" in (out / "results.md").read_text()
    # Runs split across processes merge into one table; a variant in both keeps the first run's.
    second = json.loads((out / "results.json").read_text())
    second["meta"]["command"] = "the second run"
    second["results"] = {"hinge+cl": second["results"]["hinge+unfused"],
                         "hinge": dict(second["results"]["hinge"], fid={"mean": 99.0, "std": 0.0})}
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "results.json").write_text(json.dumps(second))
    merged_dir = tmp_path / "merged"
    assert harness.main(["--combine", str(out), str(tmp_path / "second"), "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "results.json").read_text())
    assert list(merged["results"]) == ["hinge", "hinge+unfused", "hinge+cl"]
    assert merged["results"]["hinge"]["fid"]["mean"] == results["hinge"]["fid"]["mean"] != 99.0
    assert merged["meta"]["command"].endswith(" ; the second run")
    assert "| hinge+cl |" in (merged_dir / "results.md").read_text()
    assert (merged_dir / "fid_vs_iteration.png").stat().st_size > 0
    assert harness.main(["--combine", str(tmp_path / "missing"), "--out", str(merged_dir)]) == 2
