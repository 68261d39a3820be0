"""The data of a distributed run, split between its processes.

A ``DataLoader`` gets a ``DistributedSampler`` (:func:`shard_loader`), whose epoch is
set before every epoch (:class:`EpochLoader`); :class:`~torchgan_sagan.data.DeviceBatches`
shards by itself (``rank=``, ``world=``).
"""

from __future__ import annotations

from typing import Iterator, Optional

from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..data import DeviceBatches

__all__ = ["shard_loader", "distributed_sampler", "device_batches", "EpochLoader"]


def shard_loader(loader: DataLoader, *, rank: int, world_size: int, seed: int = 0) -> DataLoader:
    """``loader`` with a ``DistributedSampler``: each process gets 1/world_size of every
    epoch. A loader that already has one is returned as it is; otherwise its dataset,
    batch size, workers, ``drop_last`` and collate function are kept, and it shuffles
    if it shuffled (a ``RandomSampler``)."""
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None:
        raise ValueError("shard_loader needs a DataLoader with a batch_size (not a batch_sampler); "
                         "build it with a DistributedSampler yourself")
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank,
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=seed,
                                 drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last)


def distributed_sampler(loader) -> Optional[DistributedSampler]:
    """The ``DistributedSampler`` of ``loader``, if it has one."""
    sampler = getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, DistributedSampler) else None


def device_batches(loader) -> Optional[DeviceBatches]:
    """The DeviceBatches that ``loader`` is, or wraps (a progress bar's ``.loader``)."""
    while loader is not None and not isinstance(loader, DeviceBatches):
        loader = getattr(loader, "loader", None)
    return loader


class EpochLoader:
    """Iterates ``loader`` and calls ``sampler.set_epoch`` before every epoch."""

    def __init__(self, loader, sampler: DistributedSampler, first_epoch: int) -> None:
        self.loader, self.sampler, self.epoch = loader, sampler, first_epoch

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)
