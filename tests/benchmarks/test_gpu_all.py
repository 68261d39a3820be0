"""benchmarks/gpu_all.sh: its rehearsal on the CPU runs every step and names every
row; a step that fails stops the run with a non-zero status and keeps the rows before
it on disk."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_all.py"


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_on_the_cpu_in_under_two_minutes(tmp_path):
    start = time.perf_counter()
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_all.sh"), "--rehearse", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "gpu_all.json").read_text())["rows"]
    table = (tmp_path / "out" / "gpu_all.md").read_text()
    steps = {row["step"].split(":")[0] for row in rows}
    assert steps == {"environment", "jpeg folder", "image cache", "train", "cuda graphs", "end to end",
                     "standard scores"}
    assert all(row["what"] and row["status"] in ("ok", "not run (no GPU)") for row in rows)
    trained = {row["step"] for row in rows if row["step"].startswith("train: ")}
    assert trained == {"train: sagan_celeba_64", "train: sagan_tutorial_64", "train: torchgan's tutorial network",
                       "train: sagan_celeba_64 --cuda-graphs"}
    assert all(row["value"] > 0 for row in rows if row["what"] == "images_per_s")  # measured on the CPU too
    gpu_only = [row for row in rows if row["what"] in ("gpu_busy_share", "peak_memory_mib", "host_syncs_per_iter")]
    assert len(gpu_only) == 12 and all(row["value"] is None and row["status"] == "not run (no GPU)"
                                       for row in gpu_only)
    assert table.count("\n|") == len(rows) + 2  # header, its rule, and one line a row
    assert (tmp_path / "out" / "gpu_all.log").is_file()
    # Two minutes on the machine alone; beside other pytest-xdist workers it has a share.
    share = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    assert seconds < 120 * share, f"the rehearsal took {seconds:.0f} s ({share} worker(s) sharing the machine)"


def test_a_failing_step_stops_the_run_and_keeps_the_rows_before_it(tmp_path, monkeypatch, load_script):
    gpu_all = load_script(SCRIPT)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gpu_all, "make_jpegs", full_disk)
    assert gpu_all.run(tmp_path, "rehearse") == 1
    rows = json.loads((tmp_path / "gpu_all.json").read_text())["rows"]
    assert [row["step"] for row in rows] == ["environment", "environment", "jpeg folder"]
    assert rows[-1]["status"] == "failed" and "No space left on device" in rows[-1]["value"]
    assert "| jpeg folder | FAILED |" in (tmp_path / "gpu_all.md").read_text()


def test_without_cuda_the_gpu_run_says_to_rehearse(tmp_path, load_script, capsys):
    assert load_script(SCRIPT).run(tmp_path, "gpu") == 2
    assert "--rehearse" in capsys.readouterr().err
