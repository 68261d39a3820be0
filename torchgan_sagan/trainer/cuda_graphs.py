"""The training iteration as one CUDA-graph replay.

On a GPU the steps of these small nets are bound by kernel launches and Python: a
D-and-G iteration of ``sagan_tutorial_64`` launches about 2,000 kernels. Captured once in
a CUDA graph (``torch.cuda.graph``) the whole iteration is one launch: noise drawn,
forward and backward passes, both Adam steps, the spectral-norm power iterations, the
moving average's update and the gradient sums that torchgan logs.

torchgan's ``train_iter`` runs, per loss, a step when its counter says so (a D step
every iteration and a G step every ``ncritic``-th by default): each *kind* of iteration
(which losses step) gets a graph of its own, picked on the host. What a graph needs,
:class:`GraphedIterations` provides:

- **Static inputs.** The loop's batch is copied into a buffer the graphs read (one
  device copy); a batch of another size (the last, short one) runs eagerly.
- **State on the device.** Adam runs with ``capturable=True`` (its step count on the
  device); the moving average counts its updates on the device
  (:meth:`~torchgan_sagan.models.ema.WeightEMA.update_on_device`). Graphs are
  captured once the average is past ``ema_start`` (before it copies G: eager).
- **Capture after changes.** Learning rates are baked into a graph: a change of any
  rate (a rollback, ``apply_learning_rates``, a scheduler) captures again, and so does
  every ``load_model`` (it replaces the optimizers' state).
- **Warm-up.** The first iterations of each kind run eagerly on a side stream (cuDNN's
  autotuning, lazily built state), as PyTorch's capture recipe asks.
- **The trainer's device** (``cuda:1`` need not be current) holds the streams, captures
  and replays. Capture errors are this thread's only (``thread_local``: a DataLoader's
  pin-memory thread goes on); a failed capture leaves the current stream as it was.
- **Outputs.** Losses and gradient sums are graph outputs: the logs get copies, so the
  deferred logger (:mod:`torchgan_sagan.trainer.deferred_logging`) reads the values of
  every iteration, and nothing is read back between log points.

Sampling, metrics and checkpoints run eagerly, outside the graphs, in eval mode.

It applies to this package's losses (their steps read nothing back), one process,
Adam, and nets that are neither compiled nor autocast; :func:`graph_refusals` gives
the reason in one line each where it does not. Opt-in (``cuda_graphs=True``, the
``--cuda-graphs`` flag): this path has not yet run on GPU hardware (docs/gpu.md).
On the CPU, :class:`GraphedIterations` with ``capture=False`` runs the same iteration
eagerly, which is how the tests check it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch
from torchgan.losses import DiscriminatorLoss, GeneratorLoss
from torchgan.models import Discriminator, Generator

from .. import losses as package_losses
from ..models.ema import WeightEMA
from .adam_state import OPTIMIZER_FLAGS, make_capturable, place_step_counts
from .torchgan_fixes import squared_gradient_norm

__all__ = ["GraphedIterations", "GraphedTraining", "graph_refusals", "WARMUP_ITERATIONS"]

#: Eager iterations of each kind before its capture.
WARMUP_ITERATIONS = 3

_PACKAGE_LOSSES = tuple(getattr(package_losses, name) for name in package_losses.__all__
                        if isinstance(getattr(package_losses, name), type))


def _nets(trainer) -> Dict[str, torch.nn.Module]:
    return {name: getattr(trainer, name) for name in trainer.model_names}


def graph_refusals(trainer) -> List[str]:
    """Why the trainer's iteration cannot be captured, one reason each; ``[]``: it can."""
    reasons = []
    if trainer.device.type != "cuda":
        reasons.append(f"training on {trainer.device.type}: CUDA graphs need a CUDA device")
    if getattr(trainer, "rank_and_world", (0, 1))[1] > 1 or isinstance(
            next(iter(_nets(trainer).values()), None), torch.nn.parallel.DistributedDataParallel):
        reasons.append("a distributed run: DDP's gradient all-reduce runs in hooks outside a graph")
    for name, loss in trainer.losses.items():
        kind = type(loss).__name__
        if not isinstance(loss, _PACKAGE_LOSSES):
            penalty = not isinstance(loss, GeneratorLoss) and "Penalty" in kind
            reasons.append(f"{kind} is torchgan's own loss: " + (
                "a gradient penalty differentiates D's input gradient and reads its loss back" if penalty
                else "its step reads the loss back to the host every iteration"))
        elif loss.override_train_ops is not None:
            reasons.append(f"{kind} has override_train_ops: its step is not the package's")
    for name in trainer.optimizer_names:
        optimizer = getattr(trainer, name)
        if type(optimizer) is not torch.optim.Adam:
            reasons.append(f"{name} is {type(optimizer).__name__}: only Adam is made capturable")
    for name, net in _nets(trainer).items():
        options = getattr(net, "speed", None)
        if options is not None and options.compile:
            reasons.append(f"the {name} is compiled (compile): torch.compile and capture do not mix here")
        if options is not None and options.amp is not None:
            reasons.append(f"the {name} runs under autocast (amp={options.amp!r}): its cast cache cannot be "
                           f"captured")
    return reasons


def _gradient_sum(net: torch.nn.Module, eps: float = 1e-5) -> Optional[torch.Tensor]:
    """The squared gradient norm of ``net`` that torchgan logs (as the package's
    ``update_grads`` computes it), ``None`` without gradients."""
    total = squared_gradient_norm(net)
    return None if total is None else torch.where(total > eps, total, 0.0)


class GraphedIterations:
    """The trainer's iterations as CUDA-graph replays (see the module's docstring).

    Args:
        trainer: a trainer with this package's losses.
        capture: ``False`` runs each iteration eagerly through the same code (static
            buffers, the same outputs), on any device.
        warmup: eager iterations of each kind before its capture.
    """

    def __init__(self, trainer, *, capture: bool = True, warmup: int = WARMUP_ITERATIONS) -> None:
        self.trainer, self.capture, self.warmup = trainer, capture, warmup
        self.real: Optional[torch.Tensor] = None
        self.labels: Optional[torch.Tensor] = None
        self.graphs: Dict[tuple, Tuple[torch.cuda.CUDAGraph, list]] = {}
        self.eager_runs: Dict[tuple, int] = defaultdict(int)
        self._rates: Optional[tuple] = None
        self._prepared = False

    # -- state -------------------------------------------------------------------------
    def drop(self) -> None:
        """Forget the graphs (after a load): the next iterations capture again."""
        self.graphs.clear()
        self.eager_runs.clear()
        self._prepared = False

    def _averages(self) -> List[WeightEMA]:
        found = []
        for net in _nets(self.trainer).values():
            found += [m for m in net.modules() if isinstance(m, WeightEMA)]
        return found

    def _prepare(self) -> bool:
        """Adam capturable, the averages counting on the device; ``False`` while an
        average still copies G (before ``ema_start``): run eagerly until then."""
        if self._prepared:
            return True
        averages = self._averages()
        if any(ema._steps() < ema.start for ema in averages):
            return False
        for ema in averages:
            ema.count_on_device = True
        if self.capture:
            for name in self.trainer.optimizer_names:
                make_capturable(getattr(self.trainer, name))
        self._prepared = True
        return True

    def _kind(self) -> tuple:
        """Which losses step in this iteration, as torchgan's ``train_iter`` decides."""
        t, info = self.trainer, self.trainer.loss_information
        return tuple((info["discriminator_iters"] % t.ncritic == 0) if isinstance(loss, GeneratorLoss)
                     else (info["generator_iters"] % t.ngen == 0) for loss in t.losses.values())

    def applies(self) -> bool:
        """Whether this iteration (the trainer's current batch) can run here."""
        t = self.trainer
        fits = self.real is None or (t.real_inputs.shape == self.real.shape
                                     and (t.labels is None) == (self.labels is None))
        return fits and self._prepare()

    # -- the iteration -----------------------------------------------------------------
    def _body(self, kind: tuple) -> list:
        """The iteration on the static buffers: ``[(loss name, loss, {net: gradient
        sum}), ...]`` for the losses that step. Reads nothing back."""
        t = self.trainer
        t.real_inputs, t.labels = self.real, self.labels
        outputs = []
        for (name, loss), runs in zip(t.losses.items(), kind):
            if not runs:
                continue
            value = loss.train_ops(**t._get_arguments(t.loss_arg_maps[name]))
            judged = Generator if isinstance(loss, GeneratorLoss) else Discriminator
            sums = {n: _gradient_sum(net) for n, net in _nets(t).items() if isinstance(net, judged)}
            outputs.append((name, value, {n: s for n, s in sums.items() if s is not None}))
        return outputs

    def _zero_grad(self) -> None:
        for net in _nets(self.trainer).values():
            net.zero_grad(set_to_none=True)

    def _captured(self, kind: tuple) -> list:
        """Capture ``kind``'s iteration on the trainer's device and replay it once. The
        stream current before is current after, even when the capture raises (torch
        restores it only after a good ``capture_end``)."""
        device = self.trainer.device
        graph = torch.cuda.CUDAGraph()
        self._zero_grad()  # gradients live in the graph's own memory
        before = torch.cuda.current_stream(device)
        try:
            with torch.cuda.device(device), torch.cuda.graph(graph, stream=torch.cuda.Stream(device),
                                                             capture_error_mode="thread_local"):
                outputs = self._body(kind)
        finally:
            torch.cuda.set_stream(before)
        self._zero_grad()
        self.graphs[kind] = (graph, outputs)
        with torch.cuda.device(device):
            graph.replay()  # capturing ran nothing: this iteration's work
        return outputs

    def _warm_up(self, kind: tuple) -> list:
        device = self.trainer.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.device(device), torch.cuda.stream(side):
            outputs = self._body(kind)
        torch.cuda.current_stream(device).wait_stream(side)
        self.eager_runs[kind] += 1
        return outputs

    def run(self):
        """One iteration on the trainer's batch; returns what ``train_iter`` returns."""
        t = self.trainer
        if self.real is None or self.real.shape != t.real_inputs.shape:
            self.real = torch.empty_like(t.real_inputs)
            self.labels = None if t.labels is None else torch.empty_like(t.labels)
        self.real.copy_(t.real_inputs, non_blocking=True)
        if self.labels is not None:
            self.labels.copy_(t.labels, non_blocking=True)
        kind = self._kind()
        if not self.capture:
            return self._account(self._body(kind))
        rates = tuple(g["lr"] for n in t.optimizer_names for g in getattr(t, n).param_groups)
        if rates != self._rates:  # a rate is baked into the graphs
            self.graphs.clear()
            self._rates = rates
        if kind in self.graphs:
            graph, outputs = self.graphs[kind]
            with torch.cuda.device(t.device):
                graph.replay()
        elif self.eager_runs[kind] < self.warmup:
            outputs = self._warm_up(kind)
        else:
            try:
                outputs = self._captured(kind)
            except RuntimeError as err:  # an operation that cannot be captured: say so, go on eagerly
                self.graphs.clear()
                self._zero_grad()  # gradients the capture allocated hold nothing
                t.graphed, t.cuda_graph_refusals = None, [f"capture failed: {str(err).strip().splitlines()[0]}"]
                print(f"cuda_graphs: {t.cuda_graph_refusals[0]}; training on without graphs", file=sys.stderr)
                return t.train_iter()
        return self._account(outputs)

    def _account(self, outputs: list):
        """The logs and totals of torchgan's ``train_iter`` from the iteration's outputs
        (copies: a graph's outputs are overwritten by its next replay)."""
        t = self.trainer
        lgen, ldis, gen_iters, dis_iters = 0.0, 0.0, 0, 0
        loss_logs, grad_logs = t.logger.get_loss_viz(), t.logger.get_grad_viz()
        for name, value, sums in outputs:
            value = value.clone()
            loss_logs.logs[name].append(value)
            if isinstance(t.losses[name], GeneratorLoss):
                lgen, gen_iters = lgen + value, gen_iters + 1
            elif isinstance(t.losses[name], DiscriminatorLoss):
                ldis, dis_iters = ldis + value, dis_iters + 1
            for net, total in sums.items():
                if net in grad_logs.logs:
                    entries = grad_logs.logs[net]
                    entries[len(entries) - 1] = entries[len(entries) - 1] + total
        self._zero_grad()  # as torchgan's update_grads leaves them
        return lgen, ldis, gen_iters, dis_iters


class GraphedTraining:
    """``Trainer`` mixin: with ``cuda_graphs=True`` the iterations run as CUDA-graph
    replays (:class:`GraphedIterations`) where :func:`graph_refusals` finds no reason
    against it; otherwise it says why in one line (``cuda_graph_refusals``) and trains
    eagerly."""

    def __init__(self, *args, cuda_graphs: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.graphed: Optional[GraphedIterations] = None
        self.cuda_graph_refusals: List[str] = []
        if cuda_graphs:
            self.cuda_graph_refusals = graph_refusals(self)
            if self.cuda_graph_refusals:
                print(f"cuda_graphs: not used: {'; '.join(self.cuda_graph_refusals)}", file=sys.stderr)
            else:
                self.graphed = GraphedIterations(self)

    def train_iter(self):
        if self.graphed is not None and self.graphed.applies():
            return self.graphed.run()
        return super().train_iter()  # type: ignore[misc]

    def load_model(self, *args, **kwargs):
        """torchgan's ``load_model``; the optimizers keep this trainer's ``fused`` and
        ``capturable`` (a checkpoint written with graphs on a GPU loads on the CPU, and
        the other way round), and graphs are captured again."""
        kept = {name: [{k: group.get(k) for k in OPTIMIZER_FLAGS} for group in getattr(self, name).param_groups]
                for name in self.optimizer_names}
        super().load_model(*args, **kwargs)  # type: ignore[misc]
        for name, flags in kept.items():
            optimizer = getattr(self, name)
            for group, own in zip(optimizer.param_groups, flags):
                group.update(own)
            place_step_counts(optimizer)
        if self.graphed is not None:
            self.graphed.drop()
