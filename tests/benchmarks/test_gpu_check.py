"""benchmarks/gpu_check.py's real-loop count, run on the CPU with the CUDA sync checks
recorded instead of set: the loop trains from DeviceBatches, and its epoch end and
checkpoints run with the checks off while every batch runs with them on."""

from pathlib import Path

import torch

from torchgan_sagan import get_config, make_trainer, train_step

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_the_real_loop_is_counted_without_its_epoch_end(tmp_path, monkeypatch, load_script):
    gpu_check = load_script(SCRIPT)
    mode = ["default"]
    modes_seen = {"batch": set(), "epoch end": set()}
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: {"default": 0, "warn": 1}[mode[0]])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda m: mode.__setitem__(0, {0: "default", 1: "warn"}.get(m, m)))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, batch_size=4, sample_size=4)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)  # as build() leaves it: real_inputs set
    train_iter, save = trainer.train_iter, trainer._save
    monkeypatch.setattr(trainer, "train_iter", lambda: (modes_seen["batch"].add(mode[0]), train_iter())[1])
    monkeypatch.setattr(trainer, "_save", lambda *a: (modes_seen["epoch end"].add(mode[0]), save(*a))[1])
    counted = gpu_check.real_loop_syncs(trainer, 4, 3, on_device=True)
    assert counted == {}  # no CUDA here: nothing to count, but the loop ran
    assert modes_seen == {"batch": {"default", "warn"}, "epoch end": {"default"}}  # warm-up epoch, then counted
    assert trainer.iteration == 1 + 2 * 3 and mode[0] == "default"


def test_the_cuda_graph_check_reports_a_refusal(tmp_path, load_script):
    gpu_check = load_script(SCRIPT)
    found = gpu_check.check_cuda_graphs("sagan_32", 2, 1, torch.device("cpu"), tmp_path)
    assert found == {"refused": ["training on cpu: CUDA graphs need a CUDA device"]}
