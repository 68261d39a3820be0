"""torchgan's training loop for runs that last days: divergence caught, checkpoints by
the clock, and a resume that continues exactly where the run stopped.

:class:`ResumableTraining` is a ``Trainer`` mixin (of
:class:`~torchgan_sagan.trainer.trainer.SAGANTrainer` and
:class:`~torchgan_sagan.trainer.distributed.DistributedTrainer`). Its ``train`` runs
torchgan's steps (per batch: ``train_iter``, the running loss totals, the logger; per
epoch: ``eval_ops``, the epoch's logs, ``save_model``, ``optim_ops``: the checkpoint
comes after the logs, which torchgan writes after it), and adds:

- **Divergence.** Where values are read back anyway (every ``log_every`` iterations,
  before every checkpoint), the running losses and every weight of the nets are
  checked for ``inf`` / ``nan``; no checkpoint with non-finite weights is written.
  ``on_divergence="stop"`` raises :class:`~torchgan_sagan.trainer.divergence.DivergenceError`
  and marks the run's folder; ``"rollback"`` reloads the newest good checkpoint, halves
  both learning rates and goes on, at most ``max_rollbacks`` times.
- **Checkpoints by the clock.** ``checkpoint_every`` (``500`` iterations, or ``"20m"``)
  adds mid-epoch checkpoints to the rotation of ``retain_checkpoints`` files (a save
  replaces the oldest, atomically: the newest good one is never lost). ``keep_every``
  (iterations or a time) keeps one of them, now and then, outside the rotation, in
  ``checkpoints/kept/iteration-N.model``: a sparse series to go back to.
- **Pre-emption.** SIGTERM, SIGUSR1 and Ctrl-C finish the iteration, write a checkpoint
  and raise :class:`~torchgan_sagan.trainer.preemption.StopRequested`
  (:mod:`torchgan_sagan.trainer.preemption`); under DDP the ranks agree at the next log
  point.
- **Exact resume.** Every checkpoint holds ``train_state``: the position in the epoch,
  the iteration count, every rank's random generators and the TensorBoard steps.
  ``load_model`` restores them: the loop skips the epoch's trained batches (with the
  loader's ``set_epoch`` / ``set_position`` where it has them, as
  :class:`~torchgan_sagan.data.DeviceBatches`), and the learning rates of the trainer's
  config (``sagan_config``) are applied to the loaded optimizers.

Under DDP every rank decides alike at the same log points: one small all-reduce per log
point, none per step.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import torch

from ..checks import check_choice, parse_interval
from ..files import keep_copy
from ..recipe.configs import DIVERGENCE_ACTIONS
from .divergence import finite_weights, non_finite_losses
from .preemption import StopRequested, stop_signals
from .rollback import ROLLBACK_FACTOR, RollbackOnDivergence
from .run_state import logger_steps, rng_state, set_logger_steps, set_rng_state

__all__ = ["ResumableTraining", "run_iteration", "ROLLBACK_FACTOR", "KEPT_FOLDER"]

#: Where checkpoints kept outside the rotation go, under the checkpoints' folder.
KEPT_FOLDER = "kept"


class _Diverged(Exception):
    """Raised inside the loop; :meth:`ResumableTraining.train` decides what follows."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def run_iteration(trainer) -> Tuple[Any, Any]:
    """One iteration on the batch the trainer holds (``real_inputs``, ``labels``), as
    torchgan's loop runs it: D and G steps (``train_iter``), the running loss totals,
    the logger's per-iteration hook; counted in ``trainer.iteration`` where it has one.
    Returns the generator's and discriminator's losses."""
    lgen, ldis, gen_iters, dis_iters = trainer.train_iter()
    info = trainer.loss_information
    info["generator_losses"] += lgen
    info["discriminator_losses"] += ldis
    info["generator_iters"] += gen_iters
    info["discriminator_iters"] += dis_iters
    trainer.logger.run_mid_epoch(trainer)
    if hasattr(trainer, "iteration"):
        trainer.iteration += 1
    return lgen, ldis


def _position(loader, epoch: int, skip: int):
    """An iterator over ``loader``'s batches of ``epoch``, past its first ``skip``."""
    set_epoch = getattr(loader, "set_epoch", None) or getattr(getattr(loader, "sampler", None), "set_epoch", None)
    if set_epoch is not None:
        set_epoch(epoch)
    positioned = skip > 0 and hasattr(loader, "set_position")
    if positioned:
        loader.set_position(skip)
    batches = iter(loader)
    if skip and not positioned:  # decoded and dropped: correct, slower
        for _ in range(skip):
            next(batches, None)
    return batches


class ResumableTraining(RollbackOnDivergence):
    """``Trainer`` mixin; see the module's docstring.

    Args:
        on_divergence: ``"stop"`` or ``"rollback"``.
        max_rollbacks: rollbacks before a diverging run stops.
        checkpoint_every: mid-epoch checkpoints every N iterations or every so long
            (``"20m"``); ``None``: at epoch ends only.
    """

    def __init__(self, *args, on_divergence: str = "stop", max_rollbacks: int = 3,
                 checkpoint_every: Any = None, keep_every: Any = None, **kwargs) -> None:
        self.on_divergence = check_choice("on_divergence", on_divergence, DIVERGENCE_ACTIONS)
        if not isinstance(max_rollbacks, int) or max_rollbacks < 0:
            raise ValueError(f"max_rollbacks must be 0 or more, got {max_rollbacks!r}")
        self.max_rollbacks = max_rollbacks
        self.checkpoint_every = parse_interval("checkpoint_every", checkpoint_every)
        self.keep_every = parse_interval("keep_every", keep_every)
        super().__init__(*args, **kwargs)
        self._kept_at, self._kept_clock = 0, time.monotonic()  # the last checkpoint kept outside the rotation
        self.iteration = 0  # iterations trained in all, across resumes
        self.start_batch = 0  # batches of start_epoch already trained
        self.rollbacks, self.epoch, self._trust, self._clock = 0, self.start_epoch, False, time.monotonic()
        self.last_good_checkpoint: Optional[Path] = None
        self._pending_rng: Optional[dict] = None
        self.stop_received: List[int] = []  # signals that asked the loop to stop
        self._stop_agreed = False  # every rank knows of one (at a log point or a checkpoint)

    # -- hooks a distributed trainer overrides --------------------------------------
    rank_and_world: Tuple[int, int] = (0, 1)

    def _agree(self, flags: torch.Tensor) -> torch.Tensor:
        """Every rank's flags combined (a maximum); one process: as they are."""
        return flags

    def _gather_rng(self) -> list:
        return [rng_state(self.device)]

    def _write_checkpoint(self, epoch: int, save_items) -> None:
        super().save_model(epoch, save_items)  # type: ignore[misc]

    # -- the loop ---------------------------------------------------------------------
    def train(self, data_loader, **kwargs):
        for name in self.optimizer_names:
            getattr(self, name).zero_grad()
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng, self.device)
            self._pending_rng = None
        self._clock = time.monotonic()
        with stop_signals(self.stop_received):
            while True:
                try:
                    self._train_epochs(data_loader, **kwargs)
                    break
                except _Diverged as found:
                    self._diverged(found.what)
        print("Training of the Model is Complete")

    def _train_epochs(self, loader, **kwargs) -> None:
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            start_time = time.time()
            for model in self.model_names:
                getattr(self, model).train()
            done, self.start_batch = self.start_batch, 0
            batches_in_epoch = len(loader) if hasattr(loader, "__len__") else None
            for data in _position(loader, epoch, done):
                self._take(data)
                run_iteration(self)
                done += 1
                due = self._health(clock=True) if self.logger.iteration % self.logger.every == 0 else False
                if self.checkpoint_every and self.checkpoint_every[0] == "iterations":
                    due = due or self.iteration % int(self.checkpoint_every[1]) == 0
                stopping = self._stopping()
                if (due or stopping) and done != batches_in_epoch:  # the epoch's own checkpoint follows anyway
                    self._save(epoch, done, kwargs.get("save_items"))
                    if stopping:
                        self._stop()
            for model in self.model_names:
                getattr(self, model).eval()
            self.eval_ops(**kwargs)
            self.logger.run_end_epoch(self, epoch, time.time() - start_time)
            # After the epoch's logs (torchgan saves before them): the checkpoint holds the
            # epoch's metrics, and the steps its continuation logs at.
            self._save(epoch + 1, 0, kwargs.get("save_items"))
            self.optim_ops()
            if self._stopping():
                self._stop()

    def _stopping(self) -> bool:
        """Whether a stop signal came: at once in one process; under DDP once every
        rank knows (the flags are combined at log points and checkpoints)."""
        return bool(self.stop_received) if self.rank_and_world[1] == 1 else self._stop_agreed

    def _stop(self) -> None:
        raise StopRequested(self.stop_received[0] if self.stop_received else signal.SIGTERM, self.iteration,
                            self.last_good_checkpoint)

    def _take(self, data) -> None:
        """The batch, as torchgan's loop takes it, copied without blocking the host."""
        if isinstance(data, (tuple, list)):
            self.real_inputs = data[0].to(self.device, non_blocking=True)
            self.labels = data[1].to(self.device, non_blocking=True) if len(data) > 1 else None
        elif isinstance(data, torch.Tensor):
            self.real_inputs = data.to(self.device, non_blocking=True)
        else:
            self.real_inputs = data

    # -- checks at read-back points ---------------------------------------------------
    def _health(self, *, clock: bool) -> bool:
        """Raise :class:`_Diverged` when a running loss or a weight is not finite (on
        every rank alike); return whether a checkpoint is due by the clock."""
        bad = non_finite_losses(self.loss_information)
        due = clock and self.checkpoint_every is not None and self.checkpoint_every[0] == "seconds" \
            and time.monotonic() - self._clock >= self.checkpoint_every[1]
        weights_ok = finite_weights(getattr(self, name) for name in self.model_names).to(self.device)
        flags = torch.stack([(~weights_ok).float(), torch.tensor(float(bool(bad)), device=self.device),
                             torch.tensor(float(due), device=self.device),
                             torch.tensor(float(bool(self.stop_received)), device=self.device)])
        bad_weights, bad_loss, due, self._stop_agreed = (bool(v) for v in self._agree(flags).tolist())
        if bad_loss or bad_weights:
            parts = [f"{key} {value}" for key, value in bad.items()]
            if bad_weights:
                parts.append("non-finite weights")
            raise _Diverged(", ".join(parts) or "a non-finite loss on another process")
        return due

    # -- checkpoints ------------------------------------------------------------------
    def save_model(self, epoch, save_items=None):
        """torchgan's ``save_model`` after an epoch (checked, with ``train_state``)."""
        self._save(epoch + 1, 0, save_items)

    def _save(self, epochs_done: int, batch: int, save_items) -> None:
        """A checkpoint after ``epochs_done`` epochs and ``batch`` batches of the next;
        refused (divergence) when anything is non-finite."""
        self.logger.read_back(self)
        self._health(clock=False)
        kind, every = self.keep_every or (None, 0)
        keep = (kind == "iterations" and self.iteration - self._kept_at >= every) or \
            (kind == "seconds" and time.monotonic() - self._kept_clock >= every)
        if keep:
            self._kept_at, self._kept_clock = self.iteration, time.monotonic()
        self.train_state = {"epoch": epochs_done, "batch": batch, "iteration": self.iteration,
                            "rollbacks": self.rollbacks, "rng": self._gather_rng(),
                            "logger_steps": logger_steps(self.logger), "kept_at": self._kept_at}
        slot = 0 if self.last_retained_checkpoint == self.retain_checkpoints else self.last_retained_checkpoint
        items = [] if save_items is None else [save_items] if isinstance(save_items, str) else list(save_items)
        self._write_checkpoint(epochs_done - 1, [*items, "train_state"])
        self.last_good_checkpoint = Path(f"{self.checkpoints}{slot}.model")
        if keep and self.rank_and_world[0] == 0:  # outside the rotation, for going back after a late collapse
            keep_copy(self.last_good_checkpoint, self.last_good_checkpoint.parent / KEPT_FOLDER
                      / f"iteration-{self.iteration:09d}.model")
        self._clock = time.monotonic()

    def restore_extras(self, checkpoint: dict, path: str) -> None:
        """After ``load_model``: the position, generators and steps of ``train_state``,
        and the config's learning rates (see the module's docstring)."""
        state = checkpoint.get("train_state") or {}
        self.start_batch = state.get("batch", 0) if state.get("epoch", self.start_epoch) == self.start_epoch else 0
        self.iteration = int(state.get("iteration", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self._kept_at = int(state.get("kept_at", 0))
        if hasattr(self.logger, "every"):
            self.logger.iteration = self.iteration  # the log points of the run left alone
        set_logger_steps(self.logger, state.get("logger_steps"), self.start_epoch)
        rank, world = self.rank_and_world
        states = state.get("rng") or []
        self._pending_rng = states[rank] if len(states) == world else None
        self.last_good_checkpoint = Path(path)
        self.apply_learning_rates()

    def load_model(self, load_path="", load_items=None, *, trust_checkpoint=False):
        self._trust = trust_checkpoint  # a rollback reads the run's checkpoints alike
        super().load_model(load_path, load_items, trust_checkpoint=trust_checkpoint)  # type: ignore[misc]

    def apply_learning_rates(self) -> None:
        """Set the optimizers' rates to those of ``sagan_config`` (when there is one)."""
        config = getattr(self, "sagan_config", None)
        if not config:
            return
        fields = config["fields"]
        for net, key in (("generator", "g_lr"), ("discriminator", "d_lr")):
            optimizer = getattr(self, f"optimizer_{net}", None)
            if optimizer is not None and key in fields:
                for group in optimizer.param_groups:
                    group["lr"] = fields[key]
