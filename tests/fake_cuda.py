"""Stand-ins for torch.cuda's graphs, streams and devices, for tests of the CUDA-graph
bookkeeping on a CPU: which device and stream were current where, what was captured
and replayed. No kernel runs on a GPU: the fake capture runs the iteration once, eagerly."""

import contextlib

import torch


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: counts its replays and the device current at
    each (the fake capture runs the captured iteration once, eagerly)."""

    def __init__(self):
        self.replays, self.replayed_on = 0, []

    def replay(self):
        self.replays += 1
        self.replayed_on.append(FakeCuda.current.device)


class FakeStream:
    def __init__(self, device=None):
        self.device = torch.device("cuda", FakeCuda.device_index(device))

    def wait_stream(self, other):
        pass


class FakeCuda:
    """The current device and each device's current stream, as torch.cuda keeps them."""

    current_index = 0
    current = None  # the current stream of the current device
    streams = {}

    @classmethod
    def device_index(cls, device):
        if device is None:
            return cls.current_index
        return torch.device(device).index if torch.device(device).index is not None else cls.current_index

    @classmethod
    def current_stream(cls, device=None):
        return cls.streams.setdefault(cls.device_index(device), FakeStream(cls.device_index(device)))

    @classmethod
    def set_stream(cls, stream):
        cls.streams[stream.device.index] = stream
        if stream.device.index == cls.current_index:
            cls.current = stream

    @classmethod
    @contextlib.contextmanager
    def device(cls, device):
        before = cls.current_index
        cls.current_index = cls.device_index(device)
        cls.current = cls.current_stream()
        try:
            yield
        finally:
            cls.current_index = before
            cls.current = cls.current_stream()

    @classmethod
    @contextlib.contextmanager
    def stream(cls, stream):
        before = cls.current_stream(stream.device)
        cls.set_stream(stream)
        try:
            yield
        finally:
            cls.set_stream(before)


def install(monkeypatch, *also_in):
    """torch.cuda's graphs, streams and devices as stand-ins, and ``make_capturable``
    (a CPU Adam refuses ``capturable``) recorded instead, in the package's CUDA-graph
    module and in the modules ``also_in``. Returns ``seen``: each capture (the graph,
    the current device and stream inside it, its arguments), the optimizers made
    capturable, the streams made (side and capture streams)."""
    seen = {"captures": [], "capturable": [], "warm_up_streams": []}
    FakeCuda.current_index, FakeCuda.streams = 0, {}
    FakeCuda.current = FakeCuda.current_stream()

    @contextlib.contextmanager
    def capture(graph, stream=None, capture_error_mode="global", **kwargs):
        stream = stream or FakeStream()
        before = FakeCuda.current_stream(stream.device)
        FakeCuda.set_stream(stream)  # as torch.cuda.graph: the capture stream is current inside
        seen["captures"].append({"graph": graph, "device": FakeCuda.current.device, "stream": stream,
                                 "error_mode": capture_error_mode})
        yield
        FakeCuda.set_stream(before)  # restored only when the capture ends well

    class SideStream(FakeStream):
        """torch.cuda.Stream: a stream made by the code under test."""

        def __init__(self, device=None):
            super().__init__(device)
            seen["warm_up_streams"].append(self)

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "Stream", SideStream)
    monkeypatch.setattr(torch.cuda, "stream", FakeCuda.stream)
    monkeypatch.setattr(torch.cuda, "current_stream", FakeCuda.current_stream)
    monkeypatch.setattr(torch.cuda, "set_stream", FakeCuda.set_stream)
    monkeypatch.setattr(torch.cuda, "device", FakeCuda.device)
    from torchgan_sagan.trainer import cuda_graphs

    for module in (cuda_graphs, *also_in):
        monkeypatch.setattr(module, "make_capturable", seen["capturable"].append)
    return seen
