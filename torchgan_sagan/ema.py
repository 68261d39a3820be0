r"""An exponential moving average (EMA) of a network's weights.

Later GAN practice (Karras et al. 2018; BigGAN; StudioGAN) samples from a copy of G
whose weights average G's over training:

.. math:: \theta_{ema} \leftarrow d\,\theta_{ema} + (1 - d)\,\theta \qquad
          \text{after every optimizer step of } G

with decay ``d`` near 1 (0.999 by default). Before ``start`` steps the copy simply
follows G (``\theta_{ema} = \theta``), so the early, fast-moving weights do not
linger in the average.

:class:`WeightEMA` keeps the copy as a module whose tensors are all buffers: it is not
trained, an optimizer built from the owner's ``parameters()`` never sees it, but it
moves with ``.to()`` and is saved and loaded with the owner's ``state_dict``.

- BatchNorm running statistics are averaged like the weights (and the batch counter
  copied), so the copy normalizes with statistics that match its own weights.
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
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ._validation import check_ema
from .layers import refresh_spectral_norm

__all__ = ["WeightEMA", "follow_optimizer_steps", "ema_update_"]


def ema_update_(average: List[torch.Tensor], current: List[torch.Tensor], decay: float) -> None:
    """In place: ``average = decay * average + (1 - decay) * current``, for all tensors in
    one ``torch._foreach_lerp_`` (a few kernel launches on a GPU, not one per tensor)."""
    if average:
        torch._foreach_lerp_(average, [c.to(a.dtype) for a, c in zip(average, current)], 1.0 - decay)


def _is_power_iteration_state(name: str) -> bool:
    # torch's spectral norm keeps its singular-vector estimates as buffers _u and _v.
    return name.endswith("._u") or name.endswith("._v")


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
    updates and is saved with the ``state_dict``.
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
        # The step count on the host, so that an update never reads ``steps`` back from
        # the device; None: read it once (after construction or loading).
        self._host_steps: Optional[int] = 0

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
        run computes identically on its own, given identical weights of the network: the
        averaged weights, their singular-vector estimates and the step count. Only the
        BatchNorm statistics depend on each process's batch."""
        power_iteration = [name for name, _ in self.model.named_buffers() if _is_power_iteration_state(name)]
        return ["steps", *(f"model.{name}" for name in [*self.parameter_names, *power_iteration])]

    def reset_steps(self) -> None:
        """Count the updates from 0 again (the average restarts with the next one)."""
        self.steps.zero_()
        self._host_steps = 0

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host_steps = None  # the loaded count is read once, at the next update

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step towards ``source`` (a copy while ``steps < start``)."""
        if self._host_steps is None:
            self._host_steps = int(self.steps)
        self._host_steps += 1
        self.steps.fill_(self._host_steps)  # host to device, no read back
        if self._host_steps <= self.start:
            self.copy_(source)
            return
        average, current = [], []
        for name, mine, theirs in self._pairs(source):
            if _is_power_iteration_state(name):
                continue  # refined below, against the averaged weights
            if mine.is_floating_point():
                average.append(mine)
                current.append(theirs)
            else:
                mine.copy_(theirs)  # e.g. BatchNorm's num_batches_tracked
        ema_update_(average, current, self.decay)
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
