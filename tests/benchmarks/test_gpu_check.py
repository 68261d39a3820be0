"""benchmarks/gpu_check.py's real-loop count, run on the CPU with the CUDA sync checks
recorded instead of set: the loop trains from DeviceBatches, and its epoch end and
checkpoints run with the checks off while every batch runs with them on."""

from pathlib import Path

import pytest

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


class _TimingEvent:
    """torch.cuda.Event(enable_timing=True) on a CPU: 1 ms between any two."""

    def __init__(self, **kwargs):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return 1.0


@pytest.fixture
def graphs_on_the_cpu(monkeypatch, load_script):
    """gpu_check with torch.cuda's graphs, streams, events and sync checks as stand-ins,
    and no refusal for the CPU: its CUDA-graph check runs here."""
    import fake_cuda

    from torchgan_sagan.trainer import cuda_graphs

    gpu_check = load_script(SCRIPT)
    fake_cuda.install(monkeypatch, gpu_check)
    monkeypatch.setattr(cuda_graphs, "graph_refusals", lambda trainer: [])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(torch.cuda, "Event", _TimingEvent)
    return gpu_check


def test_the_graph_check_compares_with_an_eager_control(tmp_path, graphs_on_the_cpu):
    found = graphs_on_the_cpu.check_cuda_graphs("sagan_32", 2, 4, torch.device("cpu"), tmp_path)
    assert found["graphs"] == 1 and "fell_back" not in found
    assert found["eager_vs_eager_weight_diff"] == 0.0  # the CPU is deterministic
    # The stand-in's replays do nothing (as replays on the wrong device might): the
    # comparison sees it, above what two eager runs differ by.
    assert found["max_relative_weight_diff"] > 1e-3
    assert found["eager_ms"] == found["graph_ms"] == 0.25  # 1 ms over 4 iterations


def test_a_capture_that_falls_back_is_reported_not_a_crash(tmp_path, graphs_on_the_cpu, monkeypatch, capsys):
    import contextlib

    @contextlib.contextmanager
    def failing(graph, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")
        yield

    monkeypatch.setattr(torch.cuda, "graph", failing)
    found = graphs_on_the_cpu.check_cuda_graphs("sagan_32", 2, 4, torch.device("cpu"), tmp_path)
    assert found["fell_back"] == ["capture failed: operation not permitted when stream is capturing"]
    assert found["graphs"] == 0 and found["eager_vs_eager_weight_diff"] == 0.0
    assert found["max_relative_weight_diff"] == 0.0  # it trained on eagerly, as the eager run did


def test_waits_on_events_are_counted_as_host_syncs(graphs_on_the_cpu):
    def step():
        torch.cuda.Event().synchronize()  # as DeviceBatches waits for a pinned buffer's copy

    counted = graphs_on_the_cpu.count_syncs(step, 3)
    assert counted == {"test_gpu_check.py:" + str(step.__code__.co_firstlineno + 1): 3}


def test_the_nets_train_with_the_optimizer_celeba_builds_on_cuda(tmp_path, monkeypatch, load_script):
    throughput = load_script(SCRIPT.parent / "throughput.py")
    built = {}

    class Built(Exception):
        pass

    def recording(cfg, network_params=None, **kwargs):
        built["params"] = network_params
        raise Built

    monkeypatch.setattr(throughput, "make_trainer", recording)
    for spec, fused in (("sagan_celeba_64", True), ("tutorial-torchgan", None)):
        with pytest.raises(Built):
            throughput.build(spec, 2, 8, torch.device("cuda"), tmp_path)
        assert {net["optimizer"]["args"].get("fused") for net in built["params"].values()} == {fused}, spec
