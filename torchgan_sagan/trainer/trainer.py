"""Training with torchgan's ``Trainer`` from a config: build one, or drive it a batch
at a time.

:func:`make_trainer` turns a :class:`~torchgan_sagan.recipe.configs.SAGANConfig` into a
ready ``Trainer`` (or :class:`~torchgan_sagan.trainer.distributed.DistributedTrainer`) whose
files go under one folder. :func:`train_step` runs one iteration on a batch the
caller chose, exactly as ``Trainer.train`` does for each batch of its loader: for
harnesses and benchmarks that control the data stream themselves::

    trainer = make_trainer(get_config("sagan_32", image_channels=1), out="runs/digits")
    trainer(loader)                          # torchgan's own loop, or:
    for images, labels in stream:
        train_step(trainer, images, labels)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torchgan.trainer import Trainer

from ..files import remove_partial_files
from ..recipe.configs import SAGANConfig
from .cuda_graphs import GraphedTraining
from .deferred_logging import DeferredLogging
from .resumable import ResumableTraining, run_iteration
from .run_folder import SavesConfigInCheckpoints, write_config

__all__ = ["SAGANTrainer", "make_trainer", "train_step", "cuda_settings", "fused_adam"]


class SAGANTrainer(GraphedTraining, ResumableTraining, DeferredLogging, SavesConfigInCheckpoints, Trainer):
    """torchgan's ``Trainer``, whose checkpoints also record the config that built its
    nets (``sagan_config``, see :mod:`torchgan_sagan.trainer.run_folder`) when one is set, and whose
    per-iteration logging reads losses and gradient sums back to the host every
    ``log_every`` iterations (default 50) rather than every step
    (:mod:`torchgan_sagan.trainer.deferred_logging`). Its loop catches divergence, writes
    mid-epoch checkpoints on request and resumes exactly
    (:mod:`torchgan_sagan.trainer.resumable`). With ``cuda_graphs=True`` its iterations
    are CUDA-graph replays where they can be (:mod:`torchgan_sagan.trainer.cuda_graphs`)."""


def make_trainer(
    cfg: SAGANConfig,
    *,
    out: Optional[Union[str, os.PathLike]] = None,
    device: Optional[Union[str, torch.device]] = None,
    network_params: Optional[dict] = None,
    losses: Optional[list] = None,
    metrics: Optional[list] = None,
    distributed: bool = False,
    **trainer_kwargs,
) -> Trainer:
    """A torchgan ``Trainer`` for ``cfg``.

    Args:
        cfg: the recipe: nets, losses, optimizers, epochs, ``ncritic``, sample grid.
        out: folder for checkpoints (``out/checkpoints/gan<slot>.model``), sample grids
            (``out/samples``), TensorBoard logs (``out/logs``) and the config
            (``out/config.json``); ``None``: torchgan's defaults (``./model``,
            ``./images``, ``./runs``).
        device: where to train; ``None``: CUDA when available, else the CPU (each
            process's own device when ``distributed``).
        network_params, losses: replace the config's (e.g. a reference network
            trained under the same recipe). With other ``network_params`` the run
            records no config, since it would not describe the nets.
        metrics: torchgan metrics evaluated at the end of every epoch.
        distributed: build a :class:`~torchgan_sagan.trainer.distributed.DistributedTrainer`
            (under ``torchrun``, with the process group initialized).
        trainer_kwargs: further ``Trainer`` arguments (``test_noise``,
            ``retain_checkpoints``, ...); they win over the config's.

    On CUDA the config's Adam optimizers run fused (:func:`fused_adam`).
    """
    if device is None and not distributed:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = dict(cfg.trainer_kwargs())
    if out is not None:
        out = Path(out)
        for sub in ("samples", "checkpoints", "logs"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        # One process cleans up: rank 0 (the process group may not be started yet).
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("RANK", 0))
        if not distributed or rank == 0:
            for folder in (out, out / "checkpoints"):  # what a write killed mid-way left behind
                remove_partial_files(folder)
        kwargs.update(checkpoints=str(out / "checkpoints" / "gan"), recon=str(out / "samples"),
                      log_dir=str(out / "logs"))
    kwargs.update(trainer_kwargs)
    if distributed:
        from .distributed import DistributedTrainer as trainer_class
    else:
        trainer_class = SAGANTrainer
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    params = network_params or fused_adam(cfg.network_params(), on_cuda)
    trainer = trainer_class(params, losses or cfg.losses(), metrics_list=metrics,
                            device=None if device is None else torch.device(device), **kwargs)
    tag_metrics(trainer)
    if network_params is None:
        trainer.sagan_config = cfg.to_dict()
        if out is not None and getattr(trainer, "rank", 0) == 0:
            write_config(cfg, out)
    return trainer


def tag_metrics(trainer: Trainer) -> None:
    """Log each metric under its ``tag`` (what it measures, in how many samples:
    ``Metrics/FID-1k_Inception-v3``), where torchgan would use its class name."""
    if not trainer.metrics:
        return
    logs = trainer.logger.get_metric_viz().logs
    for name in list(trainer.metrics):
        tag = getattr(trainer.metrics[name], "tag", name)
        if tag != name:
            trainer.metrics[tag] = trainer.metrics.pop(name)
            trainer.metric_arg_maps[tag] = trainer.metric_arg_maps.pop(name)
            logs[tag] = logs.pop(name)


def fused_adam(network_params: dict, on_cuda: bool) -> dict:
    """``network_params`` with every Adam made ``fused=True`` where ``on_cuda``: one
    kernel for all of a net's parameters per step, where the default (``foreach``)
    launches several per group of tensors. Elsewhere they are returned as they are."""
    if not on_cuda:
        return network_params
    for net in network_params.values():
        optimizer = net.get("optimizer", {})
        if optimizer.get("name") is torch.optim.Adam:
            optimizer["args"] = {"fused": True, **optimizer.get("args", {})}
    return network_params


def cuda_settings(device: Union[str, torch.device], *, cudnn_benchmark: Optional[bool] = None,
                  tf32: Optional[bool] = None) -> Dict[str, bool]:
    """Set cuDNN autotuning and TF32 for training on ``device``; return what was set.

    On CUDA both default to on, as GAN training with fixed image sizes wants:
    ``torch.backends.cudnn.benchmark`` picks the fastest convolution algorithm for each
    shape once, and TF32 runs float32 matrix products and convolutions on tensor cores
    (a 10-bit mantissa for the products, float32 accumulation). Elsewhere nothing is
    changed and ``{}`` is returned.
    """
    if torch.device(device).type != "cuda":
        return {}
    settings = {"cudnn_benchmark": True if cudnn_benchmark is None else bool(cudnn_benchmark),
                "tf32": True if tf32 is None else bool(tf32)}
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    torch.backends.cuda.matmul.allow_tf32 = settings["tf32"]
    torch.backends.cudnn.allow_tf32 = settings["tf32"]
    return settings


def train_step(trainer: Trainer, images: torch.Tensor, labels: Optional[torch.Tensor] = None
               ) -> Tuple[Union[float, torch.Tensor], Union[float, torch.Tensor]]:
    """One training iteration of ``trainer`` on ``images`` (and their ``labels``), as
    ``Trainer.train`` runs it for each batch: D and G steps through the losses' own
    ``train_ops``, the running loss totals updated, and the logger's per-iteration hook.
    Returns the generator and discriminator losses of the iteration: device scalars
    where the losses are this package's (reading them is a host sync), floats for
    torchgan's own losses."""
    # Without blocking: from pinned memory the copy runs while the host goes on (a
    # batch already on the device, as DeviceBatches gives, is not copied at all).
    trainer.real_inputs = images.to(trainer.device, non_blocking=True)
    trainer.labels = None if labels is None else labels.to(trainer.device, non_blocking=True)
    trainer.batch_size = images.size(0)
    return run_iteration(trainer)
