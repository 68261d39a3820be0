import numpy as np
import pytest
import torch

from torchgan_sagan.data import DeviceBatches


def _images(n=20):
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()


def _ids(batch):
    """Image index back from its pixel value (inverse of to_unit_range)."""
    return ((batch[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().long().tolist()


def test_every_epoch_is_a_new_seeded_permutation():
    batches = DeviceBatches(_images(), 6, seed=3)
    assert len(batches) == 3  # 20 // 6, the last short batch dropped
    epochs = [[i for images, _ in batches for i in _ids(images)] for _ in range(2)]
    for seen in epochs:
        assert len(seen) == 18 and len(set(seen)) == 18
    assert epochs[0] != epochs[1]
    again = DeviceBatches(_images(), 6, seed=3)
    assert [i for images, _ in again for i in _ids(images)] == epochs[0]


def test_batches_are_floats_in_the_unit_range_with_labels():
    images, labels = next(iter(DeviceBatches(np.full((4, 3, 2, 2), 255, np.uint8), 2)))
    assert images.dtype == torch.float32 and torch.equal(images, torch.ones(2, 3, 2, 2))
    assert torch.equal(labels, torch.zeros(2, dtype=torch.long))
    floats = torch.rand(4, 1, 2, 2) * 2 - 1
    got = torch.cat([b for b, _ in DeviceBatches(floats, 2, seed=0)])
    assert sorted(got.flatten().tolist()) == sorted(floats.flatten().tolist())  # floats pass as they are


def test_ranks_share_one_permutation_and_take_disjoint_parts():
    ranks = [DeviceBatches(_images(), 3, seed=1, rank=r, world=2) for r in (0, 1)]
    seen = [[i for images, _ in b for i in _ids(images)] for b in ranks]
    assert len(seen[0]) == len(seen[1]) == 9
    assert not set(seen[0]) & set(seen[1])


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        DeviceBatches(torch.zeros(4, 2, 2), 2)
    with pytest.raises(ValueError, match="batch size 8 is larger than the 5 images"):
        DeviceBatches(_images(10), 8, world=2)
    with pytest.raises(ValueError, match="rank must be in"):
        DeviceBatches(_images(), 2, rank=2, world=2)


def test_set_epoch_serves_that_epochs_order():
    first = DeviceBatches(_images(), 6, seed=3)
    orders = [[i for images, _ in first for i in _ids(images)] for _ in range(3)]
    resumed = DeviceBatches(_images(), 6, seed=3)
    resumed.set_epoch(2)
    assert [i for images, _ in resumed for i in _ids(images)] == orders[2]


class _Stream:
    def __init__(self, device):
        self.device = device


class _Event:
    """Stands in for torch.cuda.Event: where it was recorded, and waits on it."""

    made = []

    def __init__(self):
        self.stream, self.waited = None, False
        _Event.made.append(self)

    def record(self, stream=None):
        self.stream = stream if stream is not None else torch.cuda.current_stream()

    def synchronize(self):
        self.waited = True


def test_the_pinned_path_on_another_gpu_marks_each_copy_on_that_gpus_stream(monkeypatch):
    """On cuda:1 while cuda:0 is current, the copy of a pinned buffer runs on cuda:1's
    stream: its "done" event must be recorded there, or the buffer is refilled while
    still being read. torch.cuda's streams, events, memory query and the copy itself
    are stand-ins (the copy goes to the CPU)."""
    current = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, 0))  # nothing fits: host path
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream(torch.device(device or current)))
    monkeypatch.setattr(torch.cuda, "Event", _Event)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    to = torch.Tensor.to
    copies = []

    def copy(self, *args, **kwargs):
        if args and isinstance(args[0], torch.device) and args[0].type == "cuda":
            copies.append((args[0], kwargs.get("non_blocking")))
            return to(self, "cpu")
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", copy)
    _Event.made = []
    batches = DeviceBatches(_images(), 4, device="cuda:1", seed=0)
    assert not batches.on_device
    monkeypatch.setattr(batches, "_labels", lambda index: torch.zeros(4, dtype=torch.long))  # made on the GPU
    seen = [i for images, _ in batches for i in _ids(images)]
    assert len(seen) == 20 and len(set(seen)) == 20  # every image once, through the two buffers
    assert copies == [(torch.device("cuda", 1), True)] * 5
    assert [e.stream.device for e in _Event.made] == [torch.device("cuda", 1)] * 5
    assert [e.waited for e in _Event.made] == [True, True, True, False, False]  # before each refill


def test_devices_other_than_cuda_take_the_images_whole():
    batches = DeviceBatches(_images(), 4, device="meta", gpu_share=0.0)
    assert batches.on_device and batches.images.device.type == "meta"


def test_labels_follow_their_images_on_the_device_path_and_the_host_path(monkeypatch):
    labels = np.arange(20) * 3 % 7  # image i is of class 3i mod 7
    on_cpu = DeviceBatches(_images(), 4, seed=2, labels=labels)
    for images, got in on_cpu:
        assert got.tolist() == [3 * i % 7 for i in _ids(images)]
    # The host path (CUDA with images too large for it) sorts each batch's indices to
    # read the file in order: the labels must be gathered in that order too.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, 0))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream(device))
    monkeypatch.setattr(torch.cuda, "Event", _Event)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: to(self, "cpu") if a and isinstance(a[0], (
        str, torch.device)) and torch.device(a[0]).type == "cuda" else to(self, *a, **k))
    host = DeviceBatches(_images(), 4, device="cuda:0", seed=2, labels=labels)
    assert not host.on_device
    batches = list(host)
    for images, got in batches:
        assert got.tolist() == [3 * i % 7 for i in _ids(images)]
    assert sorted(i for images, _ in batches for i in _ids(images)) == sorted(i for images, _ in on_cpu
                                                                            for i in _ids(images))


def test_one_label_per_image():
    with pytest.raises(ValueError, match="3 labels for 20 images: give one label per image"):
        DeviceBatches(_images(), 4, labels=[0, 1, 2])
