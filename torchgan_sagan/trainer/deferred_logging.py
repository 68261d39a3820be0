"""torchgan's per-iteration logging without a host read per iteration.

torchgan's ``Trainer`` reads every loss back to the host as it is computed
(``loss.item()`` in each ``train_ops``), sums the squared gradients of every net with
one read per parameter, and writes the running losses and gradient sums to
TensorBoard after every iteration. On a GPU each read waits for all queued work to
finish: the host cannot run ahead, and the GPU idles while Python prepares the next
launches.

Here the package's losses return their value as a detached device scalar (see
:mod:`torchgan_sagan.losses`), the gradient sums stay on the device (fix 4 of
:mod:`torchgan_sagan.trainer.torchgan_fixes`), and :class:`DeferredLogging` (a ``Trainer`` mixin,
part of :class:`~torchgan_sagan.trainer.trainer.SAGANTrainer` and
:class:`~torchgan_sagan.trainer.distributed.DistributedTrainer`) gives the trainer a
:class:`DeferredLogger`: it reads everything pending back in one transfer every
``log_every`` iterations, at the end of each epoch and before each checkpoint, and
logs then. Between those points a training step reads nothing back. What is logged
is what torchgan logs, at every ``log_every``-th step (the running means, the latest
loss, the step's gradient sum), and the epoch summaries are unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

import torch
from torchgan.logging.logger import Logger
from torchgan.logging.visualize import GradientVisualize, LossVisualize

from ..checks import check_positive_int

__all__ = ["DeferredLogger", "DeferredLogging", "DEFAULT_LOG_EVERY", "pictures_due"]

DEFAULT_LOG_EVERY = 50


class DeferredLogger(Logger):
    """torchgan's ``Logger`` that logs the mid-epoch values every ``every`` iterations,
    after reading every pending device scalar of the trainer back at once
    (:meth:`read_back`). Made from a trainer's own logger by :class:`DeferredLogging`."""

    every: int = DEFAULT_LOG_EVERY
    #: Write nothing (ranks other than 0 of a distributed run); the pending device
    #: scalars are still read back at the same points, so the logs do not grow on the device.
    silent: bool = False

    def _start(self, every: int) -> None:
        self.every = every
        self.iteration = 0
        self._cursors: Dict[int, Tuple[list, int]] = {}
        self.get_grad_viz().deferred = True  # compat's update_grads keeps its sums on the device

    def _pending_in(self, values: list) -> List[Tuple[list, int]]:
        """Slots of ``values`` from the first one not yet read back."""
        _, start = self._cursors.get(id(values), (values, 0))
        # The last entry may still grow (update_grads adds to it), so it is looked at again next time.
        self._cursors[id(values)] = (values, max(0, len(values) - 1))
        return [(values, i) for i in range(start, len(values))]

    def read_back(self, trainer) -> None:
        """Turn every device scalar in ``trainer.loss_information`` and in the loss and
        gradient logs into a Python float, with one device-to-host transfer per device."""
        slots = [(trainer.loss_information, key) for key in trainer.loss_information]
        for viz in (self.get_loss_viz(), self.get_grad_viz()):
            for values in viz.logs.values():
                slots += self._pending_in(values)
        by_device = defaultdict(list)
        for container, key in slots:
            value = container[key]
            if isinstance(value, torch.Tensor):
                by_device[value.device].append((container, key, value))
            elif isinstance(value, tuple) and any(isinstance(v, torch.Tensor) for v in value):
                container[key] = tuple(float(v) for v in value)  # other losses' (G, D) pairs; rare
        for pending in by_device.values():
            floats = torch.stack([t.detach().reshape(()).double() for *_, t in pending]).tolist()
            for (container, key, _), value in zip(pending, floats):
                container[key] = value

    def run_mid_epoch(self, trainer, *args):
        """torchgan's per-iteration logging, written out every ``every`` iterations; in
        between the visualizers only count the step (no console, TensorBoard or visdom)."""
        self.iteration += 1
        write = self.iteration % self.every == 0
        if write:
            self.read_back(trainer)
        if self.silent:
            return
        for visualizer in self.logger_mid_epoch:
            locks = {"lock_console": True, "lock_tensorboard": not write, "lock_visdom": not write}
            if isinstance(visualizer, (LossVisualize, GradientVisualize)):
                visualizer(trainer, **locks)
            else:
                visualizer(*args, **locks)

    def run_end_epoch(self, trainer, epoch, time_duration, *args):
        """torchgan's epoch summary and end-of-epoch loggers; pictures (sample grids,
        attention maps) only at the epochs of :func:`pictures_due`. Then the loss and
        gradient logs restart from their last entry: a run's memory and checkpoints stay
        the same size however long it trains."""
        self.read_back(trainer)
        if not self.silent:
            every_logger = self.logger_end_epoch
            skipped = [] if pictures_due(epoch + 1) else [
                v for v in every_logger if type(v).__name__ == "ImageVisualize" or getattr(v, "draws_pictures", False)]
            self.logger_end_epoch = [v for v in every_logger if v not in skipped]
            try:
                super().run_end_epoch(trainer, epoch, time_duration, *args)
            finally:
                self.logger_end_epoch = every_logger
            for visualizer in skipped:  # its steps stay the epochs'
                visualizer.step += 1
        self.restart_logs()

    def restart_logs(self) -> None:
        """Keep only the last entry of every loss and gradient log (the one the
        visualizers read, and the one the gradient sums still add to)."""
        for viz in (self.get_loss_viz(), self.get_grad_viz()):
            for values in viz.logs.values():
                del values[:-1]
                self._cursors[id(values)] = (values, 0)


def pictures_due(epoch: int) -> bool:
    """Whether epoch ``epoch`` (from 1) draws its pictures: every one of the first 100,
    then every 10th up to 1,000, every 100th up to 10,000, ...: about 90 a decade, so a
    small dataset's tens of thousands of epochs leave a few hundred files, not one each."""
    return epoch <= 100 or epoch % 10 ** (len(str(epoch)) - 2) == 0


class DeferredLogging:
    """``Trainer`` mixin: the trainer's logger becomes a :class:`DeferredLogger` writing
    every ``log_every`` iterations (default :data:`DEFAULT_LOG_EVERY`; 1 logs every
    iteration, as torchgan does), and checkpoints hold plain floats."""

    def __init__(self, *args, log_every: int = DEFAULT_LOG_EVERY, **kwargs) -> None:
        log_every = check_positive_int("log_every", log_every)
        super().__init__(*args, **kwargs)
        self.logger.__class__ = DeferredLogger  # same state, deferred hooks
        self.logger._start(log_every)

    def save_model(self, epoch, save_items=None):
        self.logger.read_back(self)
        super().save_model(epoch, save_items)
