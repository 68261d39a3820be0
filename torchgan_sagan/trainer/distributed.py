r"""Data-parallel training over processes: torchgan's ``Trainer`` with DDP.

torchgan's only multi-GPU path is ``ParallelTrainer`` (``nn.DataParallel``: one
process, one Python thread driving every GPU). :class:`DistributedTrainer` keeps the
``Trainer``'s dictionary-driven interface (the same ``models`` dict, losses and
metrics) and runs one process per device, as ``torchrun`` launches them:

- every net is wrapped in ``DistributedDataParallel``; gradients are averaged over
  the processes in each backward, so all processes keep identical weights;
- the data are sharded with a ``DistributedSampler`` (one is put in if the loader has
  none), and ``set_epoch`` is called every epoch so that each epoch is shuffled anew;
- only rank 0 logs, writes sample grids, evaluates metrics and writes checkpoints; the
  others wait for it at the end of every epoch, and end with it if a write fails;
- checkpoints hold the unwrapped nets' ``state_dict`` (no ``module.`` prefixes) and
  every rank's random states: a distributed run resumes in a single process too;
- buffers (BatchNorm statistics, spectral norm's singular vectors) are broadcast from
  rank 0 at every forward (DDP's ``broadcast_buffers``), or, with
  ``sync_batchnorm=True``, BatchNorm normalizes with the statistics of the whole
  global batch (``SyncBatchNorm``). A weight average of G is given rank 0's values
  once; after that every rank computes it from the same weights, so only its
  BatchNorm statistics are broadcast.

torchgan's losses read attributes of the nets (``encoding_dims``, ``label_type``,
``num_classes``) and call them directly. The trainer therefore keeps the plain nets as
its ``generator`` / ``discriminator`` attributes, where the logger, ``save_model`` and
user code find them, and hands the losses the DDP wrappers only while a training
iteration runs; the wrappers pass attribute reads through to the net.

Launch (``examples/celeba.py`` picks this trainer by itself under ``torchrun``)::

    torchrun --nproc_per_node 4 examples/celeba.py --data-root ~/data/celeba
    # two machines, 8 GPUs each; run on both, with the first one's address:
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 examples/celeba.py --data-root ~/data/celeba

The batch size is per process; the global batch is ``batch_size * world_size``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torchgan.losses import DiscriminatorLoss, FeatureMatchingGeneratorLoss, GeneratorLoss
from torchgan.models import Discriminator, Generator
from torchgan.trainer import Trainer

from ..models.ema import WeightEMA
from .cuda_graphs import GraphedTraining
from .deferred_logging import DeferredLogging
from .resumable import ResumableTraining
from .run_state import rng_state
from .sharding import EpochLoader, device_batches, distributed_sampler, shard_loader
from .run_folder import SavesConfigInCheckpoints

__all__ = ["DistributedTrainer", "init_distributed", "launched_by_torchrun", "shard_loader"]


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (which sets ``WORLD_SIZE`` and
    ``RANK`` and the rendezvous variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(backend: Optional[str] = None, *, timeout: Optional[timedelta] = None
                     ) -> Tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` set up; return ``(rank, world_size, device)``.

    ``backend``: ``"nccl"`` when CUDA is available, else ``"gloo"``. Each process uses
    the GPU of its ``LOCAL_RANK``, or the CPU. Once a process group exists, its backend
    decides (a gloo group trains on the CPU even where there are GPUs), so calling it
    again returns the same. ``timeout`` bounds every collective, the end-of-epoch wait
    for rank 0's metrics included (torch's default: 10 minutes for nccl, 30 for gloo);
    raise it when the metrics take longer.
    """
    if not launched_by_torchrun():
        raise RuntimeError(
            "init_distributed() needs the environment that torchrun sets (WORLD_SIZE, RANK, "
            "MASTER_ADDR, MASTER_PORT); launch with torchrun --nproc_per_node N script.py"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_initialized():
        backend = dist.get_backend()
    cuda = torch.cuda.is_available() and backend != "gloo"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                               f"lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not dist.is_initialized():
        # torchrun's store outlives a restart (--max-restarts); the group's keys carry the
        # attempt, so that restarted workers do not read the addresses of the dead ones.
        store, rank, world = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"), rank=rank, world_size=world,
                                store=dist.PrefixStore(f"attempt{attempt}/", store),
                                **({} if timeout is None else {"timeout": timeout}))
    return dist.get_rank(), dist.get_world_size(), device


class _AttributeForwardingDDP(DistributedDataParallel):
    """DDP that lets torchgan read the net's attributes (``encoding_dims``,
    ``label_type``, ``num_classes``, ``sampler``...) through the wrapper."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def _convert_sync_batchnorm(net: torch.nn.Module) -> None:
    """Make the trained BatchNorm layers of ``net`` SyncBatchNorm, in place. torch's
    conversion reuses their parameters, so optimizers built on ``net`` still hold them.
    A weight average (:class:`~torchgan_sagan.models.ema.WeightEMA`) only runs in eval mode and
    keeps plain BatchNorm."""
    for name, child in net.named_children():
        if not isinstance(child, WeightEMA):
            setattr(net, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))


def _skip_replicated_ema_buffers(net: torch.nn.Module) -> None:
    """Keep DDP from broadcasting a weight average's copy of the net at every forward:
    every rank computes it identically (:meth:`WeightEMA.replicated_names`) from the
    same weights, once it starts from rank 0's, which it is given here. Its BatchNorm
    statistics are standing statistics of the averaged weights over noise drawn from a
    fixed seed, the same on every rank."""
    names = [f"{prefix}.{name}" if prefix else name
             for prefix, module in net.named_modules() if isinstance(module, WeightEMA)
             for name in module.replicated_names()]
    if names:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, names)
        buffers = dict(net.named_buffers())
        for name in names:
            dist.broadcast(buffers[name], src=0)


class DistributedTrainer(GraphedTraining, ResumableTraining, DeferredLogging, SavesConfigInCheckpoints, Trainer):
    """torchgan's ``Trainer`` over ``DistributedDataParallel``, one process per device.

    Takes the ``Trainer``'s arguments (``models``, ``losses_list``, ``metrics_list``,
    ``ncritic``, ``epochs``, ``sample_size``, ``checkpoints``, ...), plus:

    Args:
        device: this process's device; default: the one :func:`init_distributed` picks.
        sync_batchnorm: turn every BatchNorm into ``SyncBatchNorm`` (statistics over the
            global batch; CUDA only). Otherwise each process normalizes with its own
            batch's statistics and rank 0's running statistics are broadcast.
        find_unused_parameters: passed to DDP; default: on only with torchgan's
            feature-matching loss, which leaves D's head out of G's backward.
        backend: process-group backend (``"nccl"`` / ``"gloo"``), used if the group is
            not initialized yet.

    Call it with a ``DataLoader`` (or anything with ``batch_size`` whose ``sampler`` is
    a ``DistributedSampler``): a ``DataLoader`` without one is sharded by
    :func:`shard_loader`.
    """

    def __init__(self, models, losses_list, metrics_list=None, device: Optional[torch.device] = None, *,
                 sync_batchnorm: bool = False, find_unused_parameters: Optional[bool] = None,
                 backend: Optional[str] = None, **kwargs) -> None:
        self.rank, self.world_size, picked = init_distributed(backend)
        device = device or picked
        if sync_batchnorm and torch.device(device).type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA devices (DDP refuses SyncBatchNorm on the CPU); "
                             "leave it off here, and rank 0's BatchNorm statistics are broadcast instead")
        super().__init__(models, losses_list, metrics_list, device=device, **kwargs)
        if find_unused_parameters is None:
            find_unused_parameters = any(isinstance(loss, FeatureMatchingGeneratorLoss) for loss in losses_list)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.wrapped = {}
        for name in self.model_names:
            net = getattr(self, name)
            if sync_batchnorm:
                _convert_sync_batchnorm(net)
            _skip_replicated_ema_buffers(net)
            # DDP's default: buffers are synced from rank 0 at construction and every forward.
            self.wrapped[name] = _AttributeForwardingDDP(net, device_ids=ids, find_unused_parameters=find_unused_parameters)
        self.logger.silent = self.rank != 0  # only rank 0 writes logs (see DeferredLogger.silent)
        self.rank_and_world = (self.rank, self.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextmanager
    def _ddp_nets(self):
        plain = {name: getattr(self, name) for name in self.model_names}
        try:
            for name, wrapper in self.wrapped.items():
                setattr(self, name, wrapper)
            yield
        finally:
            for name, net in plain.items():
                setattr(self, name, net)

    def train_iter(self):
        """One iteration of every loss, with the nets seen through DDP."""
        with self._ddp_nets():
            result = super().train_iter()
        # torchgan logs gradient norms only for nets that are Generator/Discriminator
        # instances, which the wrappers are not: log them from the plain nets.
        grads = self.logger.get_grad_viz()
        for loss in self.losses.values():
            for loss_type, net_type in ((GeneratorLoss, Generator), (DiscriminatorLoss, Discriminator)):
                if isinstance(loss, loss_type):
                    for name in self.model_names:
                        if isinstance(getattr(self, name), net_type):
                            grads.update_grads(name, getattr(self, name))
        return result

    def _agree(self, flags: torch.Tensor) -> torch.Tensor:
        """The ranks' flags combined at a log point (their maximum): one small
        all-reduce, so that every rank decides alike."""
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return flags

    def _gather_rng(self) -> list:
        states = [None] * self.world_size
        dist.all_gather_object(states, rng_state(self.device))
        return states

    def _write_checkpoint(self, epoch, save_items) -> None:
        """Rank 0 writes the checkpoint and tells the others how it went: a failed write
        (a full disk) ends every rank with the same error instead of leaving them
        waiting; the others move to the next slot."""
        error = None
        if self.is_main:
            try:
                super()._write_checkpoint(epoch, save_items)
            except OSError as err:
                error = err
        else:
            self.last_retained_checkpoint = self.last_retained_checkpoint % self.retain_checkpoints + 1
        outcome = [None if error is None else (error.errno, error.strerror, error.filename)]
        dist.broadcast_object_list(outcome, src=0)
        dist.barrier()  # every rank has the outcome before rank 0 may exit with it
        if outcome[0] is not None:
            raise error or OSError(*outcome[0])

    def eval_ops(self, **kwargs):
        """Metrics on rank 0 only (they would be the same on every rank)."""
        if self.is_main:
            super().eval_ops(**kwargs)

    def optim_ops(self):
        """The end of an epoch: every rank waits here until rank 0 has evaluated the
        metrics and logged (sample grids, TensorBoard), so that no rank sits inside the
        next epoch's first DDP collective meanwhile. The wait is bounded by the process
        group's timeout (``init_distributed(timeout=...)``)."""
        dist.barrier()
        super().optim_ops()

    def train(self, data_loader, **kwargs):
        batches = device_batches(data_loader)
        if batches is not None:  # they shard by themselves
            if (batches.rank, batches.world) != (self.rank, self.world_size):
                raise ValueError(f"DeviceBatches was built for rank {batches.rank} of {batches.world}, and "
                                 f"this process is rank {self.rank} of {self.world_size}: pass rank= and world=")
            return super().train(data_loader, **kwargs)
        if isinstance(data_loader, DataLoader):
            data_loader = shard_loader(data_loader, rank=self.rank, world_size=self.world_size)
        sampler = distributed_sampler(data_loader)
        if sampler is None:
            raise ValueError(
                "DistributedTrainer needs the data sharded: pass a DataLoader (it is given a "
                "DistributedSampler), DeviceBatches with rank= and world=, or an object whose .sampler "
                "is a DistributedSampler"
            )
        super().train(EpochLoader(data_loader, sampler, self.start_epoch), **kwargs)
