"""A training run's folder: the config that built its nets, its checkpoints, and the
generator they hold.

A run made by :func:`~torchgan_sagan.trainer.trainer.make_trainer` (and so by
``examples/celeba.py``) writes ``config.json`` next to its ``checkpoints/`` and puts
the same config into every checkpoint (``sagan_config``), so that the nets can be
rebuilt without retyping anything::

    G = load_generator("runs/sagan_faces_32")          # latest intact checkpoint, eval mode
    images = G(torch.randn(16, G.encoding_dims))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..files import atomic_write
from .checkpoints import find_checkpoints, latest_intact_checkpoint, load_checkpoint
from ..recipe.configs import SAGANConfig

__all__ = ["CONFIG_FILE", "SavesConfigInCheckpoints", "write_config", "record_change", "read_config",
           "resolve_checkpoint", "load_generator", "values_the_run_left"]

PathLike = Union[str, os.PathLike]

#: The config of a run, in its folder.
CONFIG_FILE = "config.json"


class SavesConfigInCheckpoints:
    """Trainer mixin: every checkpoint also holds ``self.sagan_config`` (the
    :meth:`SAGANConfig.to_dict` of the config that built the nets) when it is set."""

    sagan_config: Optional[dict] = None

    def save_model(self, epoch, save_items=None):
        items = [] if save_items is None else [save_items] if isinstance(save_items, str) else list(save_items)
        if self.sagan_config is not None and "sagan_config" not in items:
            items.append("sagan_config")
        super().save_model(epoch, items or None)  # type: ignore[misc]


def _history(path: Path) -> List[dict]:
    try:
        history = json.loads(path.read_text()).get("history", [])
    except (OSError, ValueError, AttributeError):
        return []
    return history if isinstance(history, list) else []


def write_config(cfg: SAGANConfig, folder: PathLike, *, change: Optional[dict] = None) -> Path:
    """Write ``cfg`` to ``folder/config.json`` (atomically), keeping the ``history`` of
    changes that file records (``change``: one more); return the path."""
    path = Path(folder) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cfg.to_dict()
    history = _history(path) + ([change] if change else [])
    if history:
        data["history"] = history
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode()))
    return path


def record_change(folder: PathLike, cfg: SAGANConfig, changes: Dict[str, Tuple[Any, Any]], why: str,
                  iteration: int) -> Path:
    """``config.json`` says ``cfg`` trains from ``iteration`` on; its history records
    ``changes`` (``{field: (old, new)}``) and ``why`` (a resume with other flags, a rollback)."""
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "iteration": iteration,
             "why": why, "changes": {name: [old, new] for name, (old, new) in changes.items()}}
    return write_config(cfg, folder, change=entry)


#: How a change the run made itself begins its ``why`` in the history (see :mod:`.rollback`).
RUN_DECISIONS = ("rollback",)


def values_the_run_left(folder: PathLike) -> Dict[str, List[Any]]:
    """``{field: [value, ...]}``: the values the run itself moved fields away from (a
    rollback's rates), since the user last set each field, from ``config.json``'s
    history. A restart that passes one of them again (torchrun, a requeue: the command
    line the run began with) means no change, not a return to it."""
    left: Dict[str, List[Any]] = {}
    for entry in _history(Path(folder) / CONFIG_FILE):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, dict):
            continue
        by_the_run = str(entry.get("why", "")).startswith(RUN_DECISIONS)
        for name, change in changes.items():
            if by_the_run and isinstance(change, list) and len(change) == 2:
                left.setdefault(name, []).append(change[0])
            elif not by_the_run:
                left.pop(name, None)  # the user's own setting: a decision of theirs
    return left


def _run_folder(checkpoint: Path) -> Path:
    """The run folder of ``run/checkpoints/gan<k>.model``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def read_config(path: PathLike, checkpoint: Optional[dict] = None) -> SAGANConfig:
    """The config of a run folder, a ``config.json`` or a checkpoint (``checkpoint``: its
    loaded contents, if at hand). Raises ``ValueError`` when there is none or it cannot
    be read."""
    path = Path(path)
    if checkpoint is not None and checkpoint.get("sagan_config") is not None:
        return SAGANConfig.from_dict(checkpoint["sagan_config"])
    if path.is_dir():
        config_file = path / CONFIG_FILE
    elif path.suffix == ".json":
        config_file = path
    else:
        config_file = _run_folder(path) / CONFIG_FILE
    if config_file.is_file():
        try:
            return SAGANConfig.from_dict(json.loads(config_file.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(f"{str(config_file)!r} is not a readable config ({err})") from None
    raise ValueError(f"{str(path)!r} records no config: it was written by a Trainer that make_trainer did not "
                     f"build (or by an older release). Rebuild the generator with the arguments you trained it "
                     f"with and load checkpoint['generator'] into it")


def resolve_checkpoint(path: PathLike, *, trust: bool = False) -> Tuple[Path, dict, list]:
    """A checkpoint from a file or a run folder: a folder gives its newest intact
    ``*.model`` (under ``checkpoints/`` or directly in it). Returns the file, its
    contents (read once) and the newer files that could not be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist: pass a run folder or a checkpoint file")
    if path.is_file():
        return path, load_checkpoint(path, trust=trust), []
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not find_checkpoints(folder):
        raise FileNotFoundError(f"no checkpoint (*.model) in {str(folder)!r}")
    found, contents, corrupt = latest_intact_checkpoint(folder, trust=trust)
    if found is None:
        raise ValueError(f"none of the {len(corrupt)} checkpoint(s) in {str(folder)!r} can be read: "
                         f"{corrupt[0][1]}")
    return found, contents, corrupt


def load_generator(path: PathLike, *, device: Any = "cpu", trust_checkpoint: bool = False) -> nn.Module:
    """The generator of a run folder or checkpoint, rebuilt from its recorded config, in
    eval mode (running its moving average when it has one), on ``device``.

    The checkpoint is read without running code from it unless ``trust_checkpoint``
    (see :func:`~torchgan_sagan.trainer.checkpoints.load_checkpoint`). ``G.config`` is the
    config it was built from.
    """
    checkpoint_path, checkpoint, _ = resolve_checkpoint(path, trust=trust_checkpoint)
    if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
        raise ValueError(f"{str(checkpoint_path)!r} is not a torchgan checkpoint: it has no 'generator' entry")
    cfg = read_config(checkpoint_path, checkpoint).replace(compile=False)
    generator = cfg.network_params()["generator"]["name"](**cfg.generator_args())
    state = checkpoint["generator"]
    if any(key.startswith("module.") or ".module." in key for key in state):
        raise ValueError(f"{str(checkpoint_path)!r} was written by torchgan's ParallelTrainer, whose keys carry "
                         f"'module.'; strip that prefix and load the state into SAGANGenerator yourself")
    generator.load_state_dict(state)
    generator.config = cfg
    return generator.to(torch.device(device)).eval()
