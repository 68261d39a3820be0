r"""An exponential moving average (EMA) of a network's weights.

Later GAN practice (Karras et al. 2018; BigGAN; StudioGAN) samples from a copy of G
whose weights average G's over training:

.. math:: \theta_{ema} \leftarrow d\,\theta_{ema} + (1 - d)\,\theta \qquad
          \text{after every optimizer step of } G

with decay ``d`` near 1 (0.999 by default). Before ``start`` steps the copy simply
follows G (``\theta_{ema} = \theta``). After it, the decay warms up with the number
``n`` of averaging updates so far, as TensorFlow's moving averages do with
``num_updates``:

.. math:: d_n = \min\left(d,\ \frac{1 + n}{10 + n}\right)

so the random initial weights do not linger: without the warm-up, 0.999^1200 = 30% of
the average after 1200 steps would still be the initial network, and its samples a
grey blur. With it the share of any early step vanishes like ``n^-9``.

:class:`WeightEMA` keeps the copy as a module whose tensors are all buffers: it is not
trained, an optimizer built from the owner's ``parameters()`` never sees it, but it
moves with ``.to()`` and is saved and loaded with the owner's ``state_dict``.

- BatchNorm statistics are not averaged: the statistics of an averaged network are not
  the average of the statistics (averaged running statistics give grey, near-identical
  samples). :meth:`WeightEMA.recompute_statistics` gives the copy *standing
  statistics* instead (as BigGAN samples): it runs the copy in training mode over many
  batches and keeps the cumulative mean and variance of every BatchNorm layer. The
  copy knows when its statistics are stale (``statistics_steps`` against ``steps``),
  and its owner recomputes them before it draws or saves samples from it.
- Spectral norm: the averaged tensor is the unnormalized ``original`` weight; the
  copy keeps its own singular-vector estimates ``_u``/``_v`` and refines them with
  one power iteration per update, as the trained net does once per forward.

:func:`follow_optimizer_steps` makes the update automatic: a hook that torch calls
after every ``optimizer.step()`` updates each tracked average whose network that
optimizer trains. So the average also works inside torchgan's ``Trainer``, whose
losses step the optimizers themselves.
"""

from __future__ import annotations

import copy
import weakref
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..checks import check_ema
from ..layers import refresh_spectral_norm

__all__ = ["WeightEMA", "follow_optimizer_steps", "ema_update_", "warmed_up_decay", "standing_statistics_"]


def ema_update_(average: List[torch.Tensor], current: List[torch.Tensor], decay: float) -> None:
    """In place: ``average = decay * average + (1 - decay) * current``, for all tensors in
    one ``torch._foreach_lerp_`` (a few kernel launches on a GPU, not one per tensor)."""
    if average:
        torch._foreach_lerp_(average, [c.to(a.dtype) for a, c in zip(average, current)], 1.0 - decay)


def warmed_up_decay(decay: float, updates: int) -> float:
    """The decay of averaging update ``updates + 1``: ``min(decay, (1 + n) / (10 + n))``
    with ``n = updates`` (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def batchnorm_layers(module: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``module`` that keep running statistics."""
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def standing_statistics_(model: nn.Module, run_batch: Callable[[], object], batches: int) -> None:
    r"""Recompute the running statistics of every BatchNorm layer of ``model`` as the
    plain average over ``batches`` calls of ``run_batch()`` (each runs ``model`` on one
    batch): BigGAN's "standing statistics".

    Only the BatchNorm layers run in training mode (batch statistics, averaged over the
    batches with equal weights); every other module runs in eval mode, so spectral norm
    runs no power iteration and its estimates stay as they are. Modes and momenta are
    restored afterwards.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in layers]
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.train()
        for k in range(1, batches + 1):
            for m in layers:
                # Running stats = the plain average of the k batches so far. (momentum=None
                # does the same, but reads the batch count back from the device.)
                m.momentum = 1.0 / k
            run_batch()
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode


def _copy_module(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose tensors are cloned explicitly (the same on any
    device; also under PyTorch's fake tensors, which ``deepcopy`` itself cannot copy)."""
    tensors = {id(t): t.detach().clone() for t in [*module.parameters(), *module.buffers()]}
    for m in module.modules():  # parametrized layers also keep the tensors in __dict__
        for name, p in m._parameters.items():
            if p is not None:
                tensors[id(p)] = nn.Parameter(tensors[id(p)], requires_grad=p.requires_grad)
    return copy.deepcopy(module, memo=dict(tensors))


def _as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` (a private copy) into a buffer of the same name."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is None:
                continue
            del m._parameters[name]
            m.register_buffer(name, p.detach().clone())
    return module


class WeightEMA(nn.Module):
    """The moving average of ``source``'s weights, as a runnable copy of it.

    Args:
        source: the trained module (its current weights seed the copy).
        decay: weight of the old average at each update, in [0, 1).
        start: updates before this many steps copy ``source`` instead of averaging.

    ``update(source)`` performs one step; ``copy_(source)`` resets the average;
    ``model`` is the averaged module (call it like ``source``). ``steps`` counts the
    updates and ``statistics_steps`` the step at which its BatchNorm statistics were
    last recomputed (-1: never); both are saved with the ``state_dict``.
    """

    def __init__(self, source: nn.Module, decay: float = 0.999, start: int = 0) -> None:
        super().__init__()
        check_ema(decay, start)
        self.decay = float(decay)
        self.start = start
        #: Names (in ``model``) of the buffers that were the network's parameters.
        self.parameter_names = [name for name, _ in source.named_parameters()]
        self.model = _as_buffers(_copy_module(source)).requires_grad_(False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("statistics_steps", torch.full((), -1, dtype=torch.long))
        # Both counts on the host, so that an update never reads them back from the
        # device; None: read once (after loading).
        self._host_steps: Optional[int] = 0
        self._host_statistics_steps: Optional[int] = -1
        #: Count and decay on the device (:meth:`update_on_device`), as a captured CUDA
        #: graph needs: a host count would be baked into the graph at capture.
        self.count_on_device = False

    def extra_repr(self) -> str:
        return f"decay={self.decay}, start={self.start}"

    def _pairs(self, source: nn.Module) -> Iterator[Tuple[str, torch.Tensor, torch.Tensor]]:
        mine = dict(self.model.named_buffers())
        theirs = dict(source.named_parameters())
        theirs.update(source.named_buffers())
        if mine.keys() != theirs.keys():
            raise ValueError("this EMA was made from a different network: "
                             f"{sorted(mine.keys() ^ theirs.keys())[:5]} differ")
        for name, tensor in mine.items():
            yield name, tensor, theirs[name]

    @torch.no_grad()
    def copy_(self, source: nn.Module) -> None:
        """Make the average equal to ``source``'s current weights and statistics."""
        mine, theirs = zip(*[(a, b) for _, a, b in self._pairs(source)])
        torch._foreach_copy_(list(mine), list(theirs))

    def replicated_names(self) -> List[str]:
        """The tensors (relative to this module) that every process of a data-parallel
        run computes identically on its own, given identical weights of the network:
        all of them. The averaged weights, their singular-vector estimates and the
        counts follow the (identical) weights; the BatchNorm statistics are recomputed
        from seeded noise, not taken from each process's batch."""
        return [name for name, _ in self.named_buffers()]

    def reset_steps(self) -> None:
        """Count the updates from 0 again (the average restarts with the next one)."""
        self.steps.zero_()
        self.statistics_steps.fill_(-1)
        self._host_steps, self._host_statistics_steps = 0, -1

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host_steps = self._host_statistics_steps = None  # the loaded counts are read once, when needed

    def _steps(self) -> int:
        if self._host_steps is None:
            self._host_steps = int(self.steps)
        return self._host_steps

    @property
    def statistics_stale(self) -> bool:
        """Whether the copy's BatchNorm statistics predate its weights (read on the host;
        after loading, the saved counts are read back once)."""
        if not batchnorm_layers(self.model):
            return False
        if self._host_statistics_steps is None:
            self._host_statistics_steps = int(self.statistics_steps)
        return self._host_statistics_steps != self._steps()

    def recompute_statistics(self, run_batch: Callable[[], object], batches: int) -> None:
        """Standing statistics for the copy (:func:`standing_statistics_`): ``run_batch()``
        runs ``self.model`` on one batch of the inputs it is sampled with. Marks the
        statistics fresh for the current step."""
        standing_statistics_(self.model, run_batch, batches)
        steps = self._steps()
        self.statistics_steps.fill_(steps)
        self._host_statistics_steps = steps

    def _averaged_pairs(self, source: nn.Module) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        weights = set(self.parameter_names)
        pairs = [(mine, theirs) for name, mine, theirs in self._pairs(source) if name in weights]
        return [a for a, _ in pairs], [b for _, b in pairs]

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step towards ``source`` (a copy while ``steps < start``), with the
        decay warmed up (:func:`warmed_up_decay`). Only the weights are averaged; the
        BatchNorm statistics become stale until :meth:`recompute_statistics`."""
        if self.count_on_device:
            self.update_on_device(source)
            return
        steps = self._steps() + 1
        self._host_steps = steps
        self.steps.fill_(steps)  # host to device, no read back
        if steps <= self.start:
            self.copy_(source)
            return
        average, current = self._averaged_pairs(source)
        ema_update_(average, current, warmed_up_decay(self.decay, steps - self.start - 1))
        refresh_spectral_norm(self.model, iterations=1)

    @torch.no_grad()
    def update_on_device(self, source: nn.Module) -> None:
        """:meth:`update` with the count and the warmed-up decay kept on the device (in
        float64, so the weights come out bit-identical), for an average already past
        ``start``: the same kernels every call, nothing read from or written by the host."""
        average, current = self._averaged_pairs(source)
        self.steps.add_(1)
        self._host_steps = None  # read back once, when needed
        n = (self.steps - self.start - 1).double()
        weight = (1.0 - torch.clamp((1.0 + n) / (10.0 + n), max=self.decay)).float()
        if average:
            torch._foreach_lerp_(average, [c.to(a.dtype) for a, c in zip(average, current)], [weight] * len(average))
        refresh_spectral_norm(self.model, iterations=1)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


# Tracked (EMA, network) pairs, by the network's id; weak, so tracking keeps nothing alive.
_TRACKED: "weakref.WeakValueDictionary[int, nn.Module]" = weakref.WeakValueDictionary()
_HOOK = None


def _after_optimizer_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    for owner in list(_TRACKED.values()):
        owner._ema_after_step(optimizer)


def follow_optimizer_steps(owner: nn.Module) -> None:
    """Call ``owner._ema_after_step(optimizer)`` after every ``optimizer.step()`` in
    this process (through torch's global optimizer hook), for as long as ``owner``
    lives. Idempotent."""
    global _HOOK
    if _HOOK is None:
        _HOOK = register_optimizer_step_post_hook(_after_optimizer_step)
    _TRACKED[id(owner)] = owner


def optimizer_trains(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> bool:
    """Whether ``parameter`` is among the tensors that ``optimizer`` updates."""
    return any(p is parameter for group in optimizer.param_groups for p in group["params"])
