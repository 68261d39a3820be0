"""Adam's flags that belong to the trainer, not to a checkpoint (``fused``,
``capturable``), and its step counts kept where those flags want them: on the
parameters' device for a fused or capturable Adam (a CUDA graph cannot read a host
count), on the host otherwise."""

from __future__ import annotations

import torch

__all__ = ["OPTIMIZER_FLAGS", "place_step_counts", "make_capturable"]

#: Optimizer settings that belong to the trainer, not to a checkpoint.
OPTIMIZER_FLAGS = ("fused", "capturable")


def place_step_counts(optimizer: torch.optim.Optimizer) -> None:
    """Adam's step counts where its flags want them: float32 tensors on the
    parameters' device for ``capturable`` or ``fused`` groups, on the host otherwise."""
    for group in optimizer.param_groups:
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Switch Adam to ``capturable=True``, its step counts onto the parameters' device."""
    for group in optimizer.param_groups:
        group["capturable"] = True
    place_step_counts(optimizer)
