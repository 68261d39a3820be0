"""Shared measurement helpers for the benchmark scripts."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from typing import Callable, Dict, Iterable, List

import torch


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's start/stop lines, which its C++ side writes to stderr."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Bytes of tensor memory allocated at the peak of ``fn()`` beyond what existed before.

    CUDA: the caching allocator's peak. CPU: the profiler's allocation and free events,
    replayed in order (exact for tensors; independent of the OS and of malloc).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def interleaved_times(fns: Dict[str, Callable[[], None]], repeats: int, device: torch.device) -> Dict[str, float]:
    """Median seconds per call of each function, calls interleaved round by round."""
    return {name: statistics.median(s) for name, s in interleaved_samples(fns, repeats, device).items()}


def interleaved_samples(fns: Dict[str, Callable[[], None]], repeats: int, device: torch.device
                        ) -> Dict[str, List[float]]:
    """Seconds of every call of each function, in round order: round i of each is
    ``[name][i]``, the functions called one after another within a round."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return samples


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}")


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Achieved fp32 GFLOP/s of one large square matrix product (the machine's ceiling),
    in the precision the convolutions run in: with TF32 where the caller turned it on
    (``torchgan_sagan.trainer.trainer.cuda_settings``), plain float32 otherwise."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    t = interleaved_times({"mm": lambda: a @ b}, repeats, device)["mm"]
    return 2 * size**3 / t / 1e9


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def markdown_table(header: Iterable[str], rows: Iterable[Iterable]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
