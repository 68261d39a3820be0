"""Fixes that let torchgan 0.1.0's ``Trainer`` run on current torch and torchvision.

``import torchgan_sagan`` calls :func:`apply_torchgan_fixes` once; calling it again
changes nothing. Each fix is scoped to the torchgan code that needs it and is
skipped where it is not needed:

1. **Image logging.** At the end of every epoch torchgan's ``ImageVisualize`` calls
   ``torchvision.utils.make_grid(..., range=(-1, 1))``; torchvision has renamed that
   argument ``value_range``, so the first epoch ends in a ``TypeError`` (torchgan
   issue #154). The fix gives the module ``torchgan.logging.visualize`` alone a view
   of torchvision whose ``utils.make_grid`` takes ``range`` as the old name of
   ``value_range``. torchvision itself, and every other caller, is untouched. Skipped
   when the installed ``make_grid`` still accepts ``range``.

2. **Loading checkpoints.** ``BaseTrainer.load_model`` calls ``torch.load``, which now
   defaults to ``weights_only=True``; torchgan checkpoints hold pickled loss objects,
   so every load fails, and a bare ``except`` hides why behind "Model could not be
   loaded". The replacement restores what torchgan restores (epoch, losses, loss
   information and logs, model and optimizer states; of the metrics, their ``history``:
   the trainer keeps the metric objects it was built with), reading the file
   with :func:`torchgan_sagan.trainer.checkpoints.load_checkpoint`: ``weights_only=True`` with
   an allowlist of the classes such a checkpoint holds, so a file with anything else
   is refused (``load_model(path, trust_checkpoint=True)`` loads it anyway). A
   missing file raises ``FileNotFoundError``, a damaged one
   ``CorruptCheckpointError``, and any other failure keeps its real cause. It also
   reads ``load_items`` by their names (0.1.0 looked them up under a literal key and
   always failed). Applied to torchgan 0.1.0 only.

   So that a resumed run does not overwrite what the first one wrote, loading also
   moves the image logger's epoch counter to the resumed epoch (sample files are
   named ``epoch<k>_generator.png`` by it) and, when the file is one of the trainer's
   own ``<checkpoints><slot>.model``, the next save to the slot after it. A trainer
   with a ``restore_extras(checkpoint, path)`` method (this package's, see
   :mod:`torchgan_sagan.trainer.resumable`) is then given the whole checkpoint.

3. **Atomic checkpoints.** ``BaseTrainer.save_model`` writes with ``torch.save``
   straight onto the checkpoint; an interrupted save leaves a truncated file. The
   module ``torchgan.trainer.base_trainer`` alone gets a view of torch whose ``save``
   is :func:`torchgan_sagan.files.atomic_save`.

4. **Gradient logging without a host read per parameter.** After every iteration
   torchgan's ``GradientVisualize.update_grads`` sums the squared gradients of each
   net with one ``.item()`` per parameter: on a GPU, dozens of host syncs per step.
   The replacement computes the same sum with ``torch._foreach_norm`` and reads it
   once per net; the logged value, its threshold and the ``zero_grad`` that follows
   are unchanged. Under this package's trainers the sum is not read at all until the
   logger reads everything back at once (:mod:`torchgan_sagan.trainer.deferred_logging`).
   Applied to torchgan 0.1.0 only.

Resuming keeps torchgan's meaning of ``epochs``: it is the total, not the number
still to run. A checkpoint written after epoch *k* (counting from 1) resumes at
epoch *k + 1*, so a ``Trainer(..., epochs=k + 1)`` that calls ``load_model`` trains
one more epoch, and one with ``epochs=k`` returns at once.
"""

from __future__ import annotations

import inspect
import os
import re

import torch

try:
    import torchvision
except RuntimeError as err:  # e.g. "operator torchvision::nms does not exist"
    raise ImportError(
        f"torchvision does not work with the installed torch ({err}). torch and "
        f"torchvision must come from matching builds: reinstall them together, e.g. "
        f"python -m pip install --force-reinstall torch torchvision"
    ) from err

import torchgan
import torchgan.logging.visualize as _visualize
import torchgan.trainer.base_trainer as _base_trainer
from torchgan.trainer.base_trainer import BaseTrainer

from ..files import atomic_save
from .checkpoints import load_checkpoint

__all__ = ["apply_torchgan_fixes"]

_CHECKPOINT_KEYS = ("epoch", "loss_objects", "metric_objects", "loss_information", "loss_logs")


class _ModuleView:
    """A stand-in for a module: the ``overrides`` first, everything else from ``module``."""

    def __init__(self, module, **overrides) -> None:
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def _make_grid_accepting_range(tensor, *args, **kwargs):
    """``torchvision.utils.make_grid`` that also takes the old ``range`` argument."""
    if "range" in kwargs:
        kwargs["value_range"] = kwargs.pop("range")
    return torchvision.utils.make_grid(tensor, *args, **kwargs)


def _fix_image_logging() -> None:
    if isinstance(_visualize.torchvision, _ModuleView):
        return
    if "range" in inspect.signature(torchvision.utils.make_grid).parameters:
        return
    _visualize.torchvision = _ModuleView(
        torchvision,
        utils=_ModuleView(torchvision.utils, make_grid=_make_grid_accepting_range),
    )


def _load_model(self, load_path="", load_items=None, *, trust_checkpoint=False):
    """torchgan's ``BaseTrainer.load_model`` for current torch (see the module docs);
    ``trust_checkpoint=True`` loads objects outside the allowlist."""
    if load_path == "":
        load_path = self.checkpoints + str(self.last_retained_checkpoint) + ".model"
    if not os.path.isfile(load_path):
        raise FileNotFoundError(
            f"no checkpoint at {load_path!r}: pass load_model the path of a file that "
            f"Trainer.save_model wrote (they are named <checkpoints><slot>.model)"
        )
    print("Loading Model From '{}' to {}".format(load_path, self.device))
    # On the CPU: load_state_dict copies the nets' tensors to their device.
    checkpoint = load_checkpoint(load_path, trust=trust_checkpoint, map_location="cpu")
    missing = [key for key in _CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(
            f"{load_path!r} is not a torchgan Trainer checkpoint: it lacks {missing}"
        )
    self.start_epoch = checkpoint["epoch"]
    self.losses = checkpoint["loss_objects"]
    _take_metric_history(self.metrics, checkpoint["metric_objects"])
    self.loss_information = checkpoint["loss_information"]
    self.logger.get_loss_viz().logs = checkpoint["loss_logs"]
    for name in self.model_names + self.optimizer_names:
        getattr(self, name).load_state_dict(checkpoint[name])
    if load_items is not None:
        for item in [load_items] if isinstance(load_items, str) else load_items:
            setattr(self, item, checkpoint[item])
    for visualizer in self.logger.logger_end_epoch:
        if isinstance(visualizer, _visualize.ImageVisualize):
            visualizer.step = self.start_epoch + 1
    slot = re.fullmatch(re.escape(self.checkpoints) + r"(\d+)\.model", load_path)
    if slot is not None:
        self.last_retained_checkpoint = (int(slot.group(1)) + 1) % self.retain_checkpoints
    restore = getattr(self, "restore_extras", None)
    if restore is not None:
        restore(checkpoint, load_path)


def _take_metric_history(current, saved) -> None:
    """The trainer keeps its own metric objects (built with this launch's data: a
    checkpoint of this package holds none); each takes the ``history`` of its namesake
    in the checkpoint (by tag, or by class name as checkpoints before tags have it)."""
    saved = saved or {}
    for name, metric in (current or {}).items():
        history = getattr(saved.get(name, saved.get(type(metric).__name__)), "history", None)
        if history is not None and hasattr(metric, "history"):
            metric.history = list(history)


def _is_torchgan_0_1_0() -> bool:
    return torchgan.__version__.lstrip("v") == "0.1.0"


def _fix_load_model() -> None:
    if _is_torchgan_0_1_0():
        BaseTrainer.load_model = _load_model


def _fix_checkpoint_writes() -> None:
    if _is_torchgan_0_1_0() and not isinstance(_base_trainer.torch, _ModuleView):
        _base_trainer.torch = _ModuleView(torch, save=atomic_save)


def squared_gradient_norm(model) -> "torch.Tensor | None":
    """The sum of the squared gradients of ``model`` as a float64 device scalar, the
    value torchgan logs; ``None`` where no parameter has a gradient."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    norms = torch._foreach_norm(grads)  # one launch for all tensors
    return torch.stack(norms).double().pow(2).sum()  # one cast for all norms


def _update_grads(self, name, model, eps=1e-5):
    """torchgan's ``GradientVisualize.update_grads`` with one host read per net, or none
    where the logger reads its logs back later (``deferred``, see
    :mod:`torchgan_sagan.trainer.deferred_logging`)."""
    gradsum = squared_gradient_norm(model)
    if gradsum is None:
        return
    if getattr(self, "deferred", False):
        # Kept on the device; zeroing gradients below eps too changes nothing, since
        # every training step zeroes its optimizer's gradients before its backward.
        self.logs[name][len(self.logs[name]) - 1] += torch.where(gradsum > eps, gradsum, 0.0)
        model.zero_grad()
        return
    gradsum = float(gradsum)  # the one host read
    if gradsum > eps:
        self.logs[name][len(self.logs[name]) - 1] += gradsum
        model.zero_grad()


def _fix_gradient_logging() -> None:
    if _is_torchgan_0_1_0():
        _visualize.GradientVisualize.update_grads = _update_grads


def apply_torchgan_fixes() -> None:
    """Apply the fixes described in this module; idempotent."""
    _fix_image_logging()
    _fix_load_model()
    _fix_checkpoint_writes()
    _fix_gradient_logging()
