"""What a trainer does once its run has diverged (``on_divergence``): roll back to the
newest good checkpoint with both learning rates halved, at most ``max_rollbacks``
times, or stop with a :class:`~torchgan_sagan.trainer.divergence.DivergenceError` and
mark the run's folder. A mixin of
:class:`~torchgan_sagan.trainer.resumable.ResumableTraining`, which finds divergence
and calls :meth:`RollbackOnDivergence._diverged`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..recipe.configs import SAGANConfig
from .divergence import DivergenceError, write_mark
from .run_folder import record_change

__all__ = ["RollbackOnDivergence", "ROLLBACK_FACTOR"]

#: What a rollback multiplies both learning rates by.
ROLLBACK_FACTOR = 0.5


def _say(line: str) -> None:
    """One line on stderr, above a progress bar if one is drawn."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


class RollbackOnDivergence:
    """Trainer mixin: the response to divergence (see the module's docstring). It uses
    the resumable trainer's ``on_divergence``, ``max_rollbacks``, ``rollbacks``,
    ``last_good_checkpoint`` and ``load_model``."""

    def _diverged(self, what: str) -> None:
        """Roll back, or stop with a :class:`DivergenceError` (and the folder's mark)."""
        rank, _ = self.rank_and_world
        where = f"iteration {self.iteration} (epoch {self.epoch + 1})"
        good = self.last_good_checkpoint
        if self.on_divergence == "rollback" and good is not None and self.rollbacks < self.max_rollbacks:
            rollbacks = self.rollbacks + 1
            self.load_model(str(good), trust_checkpoint=self._trust)
            self._pending_rng = None  # other noise from here: the same would diverge the same way
            self.rollbacks = rollbacks
            changes = self._scale_learning_rates(ROLLBACK_FACTOR)
            if rank == 0:
                rates = ", ".join(f"{key} {new:g}" for key, (_, new) in changes.items())
                _say(f"Training diverged at {where}: {what}. Rollback {rollbacks} of {self.max_rollbacks}: "
                     f"back to {good} (epoch {self.start_epoch + 1}, batch {self.start_batch}), learning "
                     f"rates now {rates}.")
                self.on_learning_rates_changed(changes, f"rollback {rollbacks} after divergence at {where}")
            return
        reason = "" if self.on_divergence == "stop" else \
            f" after {self.rollbacks} rollback(s) (max_rollbacks {self.max_rollbacks})" if good is not None else \
            " with no checkpoint to roll back to"
        newest = f"the newest good checkpoint is {good}" if good is not None else "no checkpoint was written yet"
        rates = {{"optimizer_generator": "g_lr", "optimizer_discriminator": "d_lr"}.get(name, name):
                 getattr(self, name).param_groups[0]["lr"] for name in self.optimizer_names}
        error = DivergenceError(
            f"training diverged at {where}{reason}: {what}; {newest}. Resume with lower learning rates "
            f"(--g-lr, --d-lr) or --on-divergence rollback",
            {"iteration": self.iteration, "epoch": self.epoch + 1, "what": what,
             "checkpoint": None if good is None else str(good), **rates})
        if rank == 0 and self.run_folder is not None:
            write_mark(self.run_folder, error)
        raise error

    @property
    def run_folder(self) -> Optional[Path]:
        """The folder of ``<folder>/checkpoints/gan<k>.model``, when checkpoints go there."""
        prefix = Path(self.checkpoints)
        return prefix.parent.parent if prefix.parent.name == "checkpoints" else None

    def _scale_learning_rates(self, factor: float) -> dict:
        """Multiply every optimizer's rates by ``factor``; return ``{name: (old, new)}``
        (``g_lr`` / ``d_lr`` for the nets of a config), also set in ``sagan_config``."""
        changes = {}
        for name in self.optimizer_names:
            old = getattr(self, name).param_groups[0]["lr"]
            for group in getattr(self, name).param_groups:
                group["lr"] *= factor
            net = name.replace("optimizer_", "")
            changes[{"generator": "g_lr", "discriminator": "d_lr"}.get(net, net)] = (old, old * factor)
        config = getattr(self, "sagan_config", None)
        if config:
            config["fields"].update({key: new for key, (_, new) in changes.items() if key in config["fields"]})
        return changes

    def on_learning_rates_changed(self, changes: dict, why: str) -> None:
        """Called on rank 0 after a rollback changed the rates: ``config.json`` in the
        run folder says what trains now, with the change in its history."""
        config = getattr(self, "sagan_config", None)
        if config and self.run_folder is not None:
            record_change(self.run_folder, SAGANConfig.from_dict(config), changes, why, self.iteration)
