"""The training iteration that CUDA graphs capture, checked on the CPU: run eagerly
through the same code it trains bit-identically to torchgan's iteration and reads
nothing back; the capture's bookkeeping (warm-up, one graph per kind of iteration,
capture again after a rate change or a load, the short batch eager) runs against
stand-ins for torch.cuda's graph primitives; every refusal says why."""

import contextlib

import pytest
import torch

from torchgan_sagan import get_config, make_trainer, train_step
from torchgan_sagan.trainer.cuda_graphs import GraphedIterations, graph_refusals, make_capturable
from torchgan_sagan.trainer.resumable import run_iteration

import fake_cuda
from fake_cuda import FakeCuda
from test_deferred_logging import HostReads  # same folder

CASES = {
    "default": {},
    "ncritic2-ema-start": {"ncritic": 2, "ema_decay": 0.9, "ema_start": 2},
    "wasserstein": {"loss": "wasserstein"},
    "ngen2-diffaugment": {"ncritic": -2, "diffaugment": "color,translation"},
    "conditional": {"num_classes": 3, "label_type": "required"},
}


def _trainer(tmp_path, graphed=None, **overrides):
    torch.manual_seed(0)
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, **overrides)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", log_every=3)
    if graphed is not None:
        trainer.graphed = GraphedIterations(trainer, capture=graphed)
    return trainer


def _batches(n, size=4, classes=0):
    rng = torch.Generator().manual_seed(1)
    for _ in range(n):
        images = torch.rand(size, 1, 32, 32, generator=rng) * 2 - 1
        yield images, (torch.randint(0, classes, (size,), generator=rng) if classes else None)


def _state(trainer):
    return [t for net in (trainer.generator, trainer.discriminator) for t in net.state_dict().values()] + \
        [t for name in trainer.optimizer_names for s in getattr(trainer, name).state.values() for t in s.values()]


FAST = {"default", "ncritic2-ema-start"}


@pytest.mark.parametrize("overrides", [pytest.param(v, id=k, marks=() if k in FAST else pytest.mark.slow)
                                       for k, v in CASES.items()])
def test_the_graph_ready_iteration_trains_like_torchgans(tmp_path, overrides):
    plain, graphed = _trainer(tmp_path / "a", **overrides), _trainer(tmp_path / "b", False, **overrides)
    classes = overrides.get("num_classes", 0)
    for trainer in (plain, graphed):
        torch.manual_seed(2)  # the same noise for both
        for images, labels in _batches(6, classes=classes):
            train_step(trainer, images, labels)
        trainer.logger.read_back(trainer)
    assert all(torch.equal(a, b) for a, b in zip(_state(plain), _state(graphed)))
    for viz in ("get_loss_viz", "get_grad_viz"):
        assert dict(getattr(plain.logger, viz)().logs) == dict(getattr(graphed.logger, viz)().logs)
    assert plain.loss_information == graphed.loss_information
    if "ema_start" in overrides:  # the average counted on the host, then (past its start) on the device
        assert graphed.generator.ema.count_on_device and int(graphed.generator.ema.steps) == 3


def test_the_graph_ready_iteration_reads_nothing_back(tmp_path):
    trainer = _trainer(tmp_path, False, ema_decay=0.9, diffaugment="color,translation")
    batches = _batches(3)
    train_step(trainer, *next(batches))  # the optimizers' state and the static buffers made
    with HostReads() as seen:
        for images, labels in batches:  # iterations 2 and 3: the log point reads at 3
            train_step(trainer, images, labels)
    assert seen.reads == []
    assert trainer.generator.ema.count_on_device


@pytest.fixture
def fake_graphs(monkeypatch):
    return fake_cuda.install(monkeypatch)


def test_each_kind_of_iteration_warms_up_then_is_captured_once_and_replayed(tmp_path, fake_graphs):
    trainer = _trainer(tmp_path, True, ncritic=2)  # G and D, then D alone, in turn
    graphed = trainer.graphed
    for images, labels in _batches(10):
        train_step(trainer, images, labels)
    both, d_only = (True, True), (False, True)
    assert set(graphed.graphs) == {both, d_only} and [c["graph"] for c in fake_graphs["captures"]] == [
        graphed.graphs[both][0], graphed.graphs[d_only][0]]
    assert graphed.eager_runs == {both: 3, d_only: 3}  # 3 warm-ups each, then capture and replay
    assert [graphed.graphs[k][0].replays for k in (both, d_only)] == [2, 2]
    assert len(fake_graphs["capturable"]) == 2  # both optimizers, once
    assert trainer.loss_information["generator_iters"] == 5 and trainer.loss_information["discriminator_iters"] == 10
    d_losses = next(v for k, v in trainer.logger.get_loss_viz().logs.items() if "Discriminator" in k)
    outputs = [value for _, captured in graphed.graphs.values() for _, value, _ in captured]
    assert len(d_losses) == 10 and not any(v is out for v in d_losses for out in outputs)  # copies

    # The short last batch runs eagerly, through torchgan's train_iter.
    train_step(trainer, torch.zeros(3, 1, 32, 32))
    assert len(fake_graphs["captures"]) == 2 and trainer.loss_information["discriminator_iters"] == 11

    # A new learning rate is baked into new graphs.
    for group in trainer.optimizer_generator.param_groups:
        group["lr"] /= 2
    images, _ = next(_batches(1))
    train_step(trainer, images)
    assert len(fake_graphs["captures"]) == 3 and len(graphed.graphs) == 1

    # A load replaces the optimizers' state: everything is prepared and captured again.
    trainer.save_model(0)
    trainer.load_model(f"{trainer.checkpoints}0.model")
    assert graphed.graphs == {} and not graphed._prepared
    train_step(trainer, images)
    assert len(fake_graphs["capturable"]) == 4 and sum(graphed.eager_runs.values()) == 1  # warming up again


def test_a_capture_that_fails_says_why_leaves_the_stream_as_it_was_and_training_goes_on_eagerly(
        tmp_path, fake_graphs, monkeypatch, capsys):
    trainer = _trainer(tmp_path, True)
    original = FakeCuda.current

    @contextlib.contextmanager
    def refusing(graph, stream=None, capture_error_mode="global", **kwargs):
        fake_graphs["captures"].append({"error_mode": capture_error_mode})
        FakeCuda.set_stream(stream)  # torch.cuda.graph switches to the capture stream, then
        yield
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")  # capture_end

    monkeypatch.setattr(torch.cuda, "graph", refusing)
    for images, labels in _batches(6):
        train_step(trainer, images, labels)
    assert trainer.graphed is None and trainer.loss_information["discriminator_iters"] == 6
    assert FakeCuda.current is original  # not left on the capture stream
    assert fake_graphs["captures"] == [{"error_mode": "thread_local"}]  # the loader's threads are not stopped
    assert all(p.grad is None for p in trainer.generator.parameters())  # nothing the capture left behind
    assert capsys.readouterr().err.strip().splitlines() == [
        "cuda_graphs: capture failed: CUDA error: operation not permitted when stream is capturing; "
        "training on without graphs"]


def test_capture_warm_up_and_replays_run_on_the_trainers_device(tmp_path, fake_graphs):
    """Training on cuda:1 while cuda:0 is current: the side stream, the capture stream
    and each replay belong to cuda:1."""
    trainer = _trainer(tmp_path, True)
    trainer.device = torch.device("cuda", 1)  # the tensors stay on the CPU; only the bookkeeping is CUDA's
    arguments = trainer._get_arguments
    trainer._get_arguments = lambda names: {k: torch.device("cpu") if k == "device" else v
                                            for k, v in arguments(names).items()}  # the losses' noise
    for images, _ in _batches(6):
        trainer.real_inputs, trainer.labels = images, None  # as train_step, without the copy to cuda:1
        run_iteration(trainer)
    cuda1 = torch.device("cuda", 1)
    assert [s.device for s in fake_graphs["warm_up_streams"]] == [cuda1] * 4  # 3 warm-ups, 1 capture stream
    assert [(c["device"], c["stream"].device) for c in fake_graphs["captures"]] == [(cuda1, cuda1)]
    graph = fake_graphs["captures"][0]["graph"]
    assert graph.replayed_on == [cuda1] * 3  # the capture's own iteration, then two replays
    assert FakeCuda.current_index == 0 and FakeCuda.current.device == torch.device("cuda", 0)


def test_make_capturable_moves_adams_step_counts_to_the_parameters():
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([p])
    p.grad = torch.ones(3)
    optimizer.step()
    optimizer.state[p]["step"] = optimizer.state[p]["step"].to(torch.float64)  # as a host count may come
    make_capturable(optimizer)
    assert optimizer.param_groups[0]["capturable"]
    assert optimizer.state[p]["step"].dtype == torch.float32 and float(optimizer.state[p]["step"]) == 1.0


def test_a_checkpoint_of_fused_capturable_adam_loads_with_this_trainers_settings(tmp_path):
    gpu_run = _trainer(tmp_path / "gpu")
    images, _ = next(_batches(1))
    train_step(gpu_run, images)
    for name in gpu_run.optimizer_names:  # as a run with graphs on a GPU saves them
        for group in getattr(gpu_run, name).param_groups:
            group.update(capturable=True, fused=True)
    gpu_run.save_model(0)
    cpu_run = _trainer(tmp_path / "cpu")
    cpu_run.load_model(f"{gpu_run.checkpoints}0.model")
    group = cpu_run.optimizer_generator.param_groups[0]
    assert (group["capturable"], group["fused"]) == (False, None)
    train_step(cpu_run, images)  # a CPU Adam with capturable=True would refuse to step
    assert cpu_run.loss_information["discriminator_iters"] == 2


def test_a_run_asked_for_graphs_where_they_cannot_apply_says_why_and_trains(tmp_path, capsys):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, cuda_graphs=True)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", log_every=3)
    assert capsys.readouterr().err.strip().splitlines() == [
        "cuda_graphs: not used: training on cpu: CUDA graphs need a CUDA device"]
    assert trainer.graphed is None
    train_step(trainer, torch.zeros(4, 1, 32, 32))
    assert trainer.loss_information["discriminator_iters"] == 1


@pytest.mark.parametrize("overrides, reason", [
    ({"loss": "minimax"}, "MinimaxGeneratorLoss is torchgan's own loss: its step reads the loss back"),
    ({"loss": "wasserstein_gp"}, "WassersteinGradientPenalty is torchgan's own loss: a gradient penalty"),
    pytest.param({"compile": True}, "the generator is compiled (compile)", marks=pytest.mark.slow),
    ({"amp": "bf16"}, "the generator runs under autocast (amp='bf16')"),
])
def test_each_refusal_names_its_reason(tmp_path, overrides, reason):
    trainer = _trainer(tmp_path, **overrides)
    reasons = graph_refusals(trainer)
    assert reasons[0] == "training on cpu: CUDA graphs need a CUDA device"
    assert any(r.startswith(reason) for r in reasons[1:]), reasons


def test_refusals_for_other_optimizers_steps_and_processes(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.device = torch.device("cuda")  # only the reasons below remain
    assert graph_refusals(trainer) == []
    trainer.optimizer_discriminator = torch.optim.SGD(trainer.discriminator.parameters(), lr=0.1)
    generator_loss = next(loss for name, loss in trainer.losses.items() if "Generator" in name)
    generator_loss.override_train_ops = lambda *args: 0.0
    trainer.rank_and_world = (0, 2)
    assert graph_refusals(trainer) == [
        "a distributed run: DDP's gradient all-reduce runs in hooks outside a graph",
        f"{type(generator_loss).__name__} has override_train_ops: its step is not the package's",
        "optimizer_discriminator is SGD: only Adam is made capturable",
    ]
