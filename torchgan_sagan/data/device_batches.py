"""Training batches from an array of images, with no decoding and no host waits.

:class:`DeviceBatches` stands where torchgan's ``Trainer`` expects a ``DataLoader``:
it has a length (batches per epoch) and yields ``(images, labels)``. Its images come
from a tensor or array N x C x H x W, uint8 (an image cache,
:mod:`torchgan_sagan.data.image_cache`) or float in [-1, 1] (the embedded datasets);
the labels are each image's class (zeros when none are given), served beside them.

- Where the images fit in ``gpu_share`` of the device's free memory (CelebA at 64x64 is
  2.5 GB of uint8), they are copied to the device once; each epoch's order is a seeded
  permutation drawn there, and each batch is gathered and converted there.
- Otherwise each batch is gathered on the host (from the memory-mapped file) into one
  of two pinned buffers and copied with ``non_blocking=True``: the host goes on to the
  step while the copy runs, and only waits, before refilling a buffer, for the copy
  out of it that was queued two batches earlier.
- On the CPU, batches are gathered from the array directly; other devices (not CUDA)
  take the images whole.

uint8 pixels become ``x / 255`` then ``(x - 0.5) / 0.5`` on the device, the same
numbers as torchvision's ``ToTensor`` and ``Normalize(0.5, 0.5)``. Under DDP each rank
takes every ``world``-th index of the epoch's permutation (as ``DistributedSampler``
does); the last incomplete batch is dropped.
"""

from __future__ import annotations

from typing import Iterator, Tuple, Union

import numpy as np
import torch

from ..checks import check_positive_int

__all__ = ["DeviceBatches", "to_unit_range"]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1], exactly as ``ToTensor`` + ``Normalize(0.5, 0.5)``;
    float images pass unchanged."""
    if images.dtype != torch.uint8:
        return images
    return images.to(torch.float32).div_(255).sub_(0.5).div_(0.5)


class DeviceBatches:
    """Shuffled batches of ``images`` on ``device``; see the module's docstring.

    Args:
        images: N x C x H x W, uint8 or float (a NumPy array, memory-mapped or not, or a
            tensor).
        batch_size: images per batch (per rank).
        device: where the batches go.
        seed: the shuffle's seed; epoch ``e`` uses ``seed + e``.
        rank, world: this process's share under DDP.
        gpu_share: the most of the device's free memory the images may take there.
        labels: each image's class index (N integers); ``None``: every label is 0.
    """

    def __init__(self, images: Union[np.ndarray, torch.Tensor], batch_size: int, *,
                 device: Union[str, torch.device] = "cpu", seed: int = 0, rank: int = 0, world: int = 1,
                 gpu_share: float = 0.5, labels: Union[np.ndarray, torch.Tensor, None] = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"DeviceBatches needs images of shape (N, C, H, W), got {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images: give one label per image")
        self.source = torch.from_numpy(np.asarray(images)) if isinstance(images, np.ndarray) else images
        self.batch_size = check_positive_int("batch_size", batch_size)
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, world), got rank {rank} of {world}")
        self.device, self.seed, self.rank, self.world = torch.device(device), seed, rank, world
        self.per_rank = len(self.source) // world
        if self.per_rank < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the {self.per_rank} images of each of "
                             f"{world} process(es); pass a smaller batch size")
        self.epoch = 0
        self._start = 0
        # The host path is CUDA's (pinned buffers, CUDA events); other devices take the images.
        self.on_device = self.device.type != "cuda" or self._fits(gpu_share)
        self.images = self.source.to(self.device) if self.on_device else self.source
        # Small (8 bytes an image): on the device whatever the path, gathered there.
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long).to(self.device)
        self._buffers = None  # the host path's two pinned buffers, each with its copy's event
        self._copies = 0

    def _fits(self, share: float) -> bool:
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.source.numel() * self.source.element_size() <= share * free

    def __len__(self) -> int:
        return self.per_rank // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Serve epoch ``epoch``'s order next (as ``DistributedSampler.set_epoch``): a
        resumed run continues with the order of the epoch it resumes at."""
        self.epoch = epoch

    def set_position(self, batch: int) -> None:
        """Start the next epoch at its batch ``batch`` (a resume in the middle of an
        epoch); later epochs start at their first."""
        if not 0 <= batch <= len(self):
            raise ValueError(f"set_position: batch must be in [0, {len(self)}], got {batch}")
        self._start = batch

    def _order(self) -> torch.Tensor:
        """This rank's indices for the current epoch: ``seed + epoch`` permutes all of
        them (the same on every rank), each rank takes every ``world``-th. Drawn on the
        GPU where the images are there; on the CPU otherwise (and for devices whose
        generators PyTorch may not have), then moved to the images."""
        where = self.device if self.on_device and self.device.type == "cuda" else torch.device("cpu")
        rng = torch.Generator(device=where).manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.source), generator=rng, device=where)
        order = order[self.rank::self.world][: len(self) * self.batch_size]
        return order.to(self.images.device)

    def _labels(self, index: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return torch.zeros(len(index), dtype=torch.long, device=self.device)
        return self.labels[index.to(self.device, non_blocking=True)]

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        self.epoch += 1
        start, self._start = self._start, 0
        for index in order.view(len(self), self.batch_size)[start:]:
            if not self.on_device:  # sorted: the memory-mapped file is read in order
                index = index.sort().values
            yield self._batch(index), self._labels(index)

    def _batch(self, index: torch.Tensor) -> torch.Tensor:
        if self.on_device:
            return to_unit_range(self.images[index])
        # Host path (CUDA, images too large for it): gather into a pinned buffer, copy
        # without blocking; wait only before reusing the buffer of two batches ago.
        if self._buffers is None:
            shape = (self.batch_size, *self.source.shape[1:])
            self._buffers = [(torch.empty(shape, dtype=self.source.dtype).pin_memory(), None) for _ in range(2)]
        slot = self._copies % 2
        self._copies += 1
        buffer, copied = self._buffers[slot]
        if copied is not None:
            copied.synchronize()
        torch.index_select(self.source, 0, index, out=buffer)
        # The copy runs on the current stream of *its* device (cuda:1 may not be the
        # current device): the event that says it is done is recorded there.
        stream = torch.cuda.current_stream(self.device)
        batch = buffer.to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
        self._buffers[slot] = (buffer, done)
        return to_unit_range(batch)

