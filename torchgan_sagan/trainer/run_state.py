"""What a checkpoint holds besides weights and optimizers, so that a run continues
exactly: the random number generators' states and the logging steps.

The states are kept as tensors, ints and lists, which checkpoints read without trust
(``torch.load(..., weights_only=True)``) accept: torch's CPU generator, the CUDA
generator of the process's device (when CUDA is in use), NumPy's global generator and
Python's ``random``.
"""

from __future__ import annotations

import random
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "logger_steps", "set_logger_steps"]


def rng_state(device: Optional[torch.device] = None) -> dict:
    """The states of every random number generator training draws from."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: Optional[torch.device] = None) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _visualizers(logger) -> List[object]:
    return [v for v in [*logger.logger_mid_epoch, *logger.logger_end_epoch] if hasattr(v, "step")]


def logger_steps(logger) -> Dict[str, int]:
    """The TensorBoard step of each of a torchgan logger's visualizers (losses,
    gradients, metrics, images, attention), by class name."""
    return {type(v).__name__: int(v.step) for v in _visualizers(logger)}


def set_logger_steps(logger, steps: Optional[Dict[str, int]], epoch: int) -> None:
    """Continue every curve where it stopped: the steps :func:`logger_steps` saved, or,
    for a checkpoint without them, the step after ``epoch`` for the end-of-epoch ones
    (each takes one step per epoch)."""
    for visualizer in _visualizers(logger):
        name = type(visualizer).__name__
        if steps and name in steps:
            visualizer.step = steps[name]
        elif visualizer in logger.logger_end_epoch:
            visualizer.step = epoch + 1
