"""Every GPU figure of docs/gpu.md in one run that fits a short loan of one GPU.

    bash benchmarks/gpu_all.sh OUT               # on a machine with CUDA
    bash benchmarks/gpu_all.sh --rehearse OUT    # the same steps on the CPU, tiny sizes

Steps, in order; each writes its rows to ``OUT/gpu_all.md`` (one markdown table) and
``OUT/gpu_all.json`` as soon as it ends, so a run cut short keeps what it measured. The
first step that fails ends the run with status 1 (its row says why).

1. **environment**: torch, torchvision, torchgan, the device.
2. **jpeg folder**: ``--images`` generated 178x218 JPEGs (CelebA's size), smooth random
   colour fields, written by one process per CPU.
3. **image cache**: the folder decoded into the uint8 cache that ``examples/celeba.py``
   trains from (64x64, CelebA's 160 crop), with one process per CPU.
4. **train**: ``sagan_celeba_64``, ``sagan_tutorial_64``, torchgan's tutorial network
   (its layers and losses, given to the same trainer through ``network_params``) and
   ``sagan_celeba_64 --cuda-graphs``, each run through ``examples/celeba.py``'s own
   ``main()`` (its loader, loop, checkpoint and final pictures) for one epoch of the
   folder. A probe around each iteration of the loop measures, on iteration windows
   after a warm-up: images/s (the host waits for the GPU at both ends of the window),
   the peak memory of those iterations, the GPU-busy share (``torch.profiler``: the
   summed time of the GPU's kernels over the window's wall time) and kernel launches
   per iteration, and the host syncs per iteration (``torch.cuda.set_sync_debug_mode``
   and every event or stream wait, with the Python line).
5. **cuda graphs**: ``benchmarks/gpu_check.py``'s check for ``sagan_celeba_64`` (the
   default preset): the weights after the same iterations as graph replays and eagerly,
   beside two eager runs' own difference (the control), and ms per iteration of each.
6. **end to end**: ``python examples/celeba.py --data-root`` as a user runs it (a
   subprocess), then ``--resume`` with one epoch more, then ``python -m
   torchgan_sagan.generate`` and ``.evaluate`` on the run.
7. **standard scores**: ``python -m torchgan_sagan.evaluate`` on that run at its
   defaults, 50,000 samples (FID-50k, KID, IS, precision/recall, density/coverage),
   against 5,000 of the JPEGs, with a stand-in Inception weights file of the real
   architecture (``tests/standin_inception.py``: the device machine cannot fetch the
   real one, so the scores' values mean nothing; their time and the path do).

What it costs on one H100, estimated from its parts (docs/gpu.md's figures of
2026: ``sagan_celeba_64`` 40 ms an iteration at batch 64, torchgan's tutorial network
43 ms, ``sagan_tutorial_64`` 69 ms; about 10 s to start a Python process with CUDA):
the JPEGs, about 2 ms each to make and write, ~5 s on 16 CPUs; decoding them ~5 s;
four training runs of 312 iterations (about 13 s, 13 s, 22 s and at most 13 s) plus
the profiled window, the final pictures and memorization check (~10 s each):
~2 min; the CUDA-graph check, three trainers of 20 + 20 + 5 iterations: ~15 s; end to
end, two launches of 2,000 images for 2 and 1 epochs plus two commands, four process
starts: ~1 min; the standard scores, 55,000 images through Inception-v3 (a few thousand
a second) and the neighbour searches of precision/recall and density/coverage on 16
CPUs: ~2 min (not yet measured). About 6 minutes in all; the rehearsal on a 2-core CPU
takes under 3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional

os.environ.setdefault("CONSOLE_LOGGING", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import gpu_check  # noqa: E402
from _measure import markdown_table  # noqa: E402

from torchgan_sagan.data import build_image_cache, find_images  # noqa: E402
from torchgan_sagan.metrics.standard import protocol_name  # noqa: E402
from torchgan_sagan.models.torchgan_tutorial import tutorial_losses, tutorial_network_params  # noqa: E402
from torchgan_sagan.trainer import resumable  # noqa: E402

#: Sizes of a run on a GPU and of the rehearsal on a CPU.
SIZES = {
    "gpu": dict(images=20000, batch=64, warm=20, timed=100, profiled=10, synced=10, step_channels=None,
                e2e_images=2000, graph_iters=20, samples=1000, standard_samples=50000, standard_real=5000),
    "rehearse": dict(images=300, batch=8, warm=1, timed=2, profiled=1, synced=1, step_channels=8,
                     e2e_images=48, graph_iters=2, samples=64, standard_samples=24, standard_real=12),
}
#: The training runs of step 4: (row name, config, extra flags, torchgan's tutorial network).
TRAIN_RUNS = [("sagan_celeba_64", "sagan_celeba_64", [], False),
              ("sagan_tutorial_64", "sagan_tutorial_64", [], False),
              ("torchgan's tutorial network", "sagan_tutorial_64", [], True),
              ("sagan_celeba_64 --cuda-graphs", "sagan_celeba_64", ["--cuda-graphs"], False)]
NOT_RUN = "not run (no GPU)"


class Report:
    """The rows measured so far, written to ``OUT/gpu_all.md`` and ``OUT/gpu_all.json``
    after every row."""

    def __init__(self, out: Path, mode: str) -> None:
        self.out, self.mode, self.rows = out, mode, []
        self.started = time.time()

    def add(self, step: str, what: str, value, status: str = "ok") -> None:
        self.rows.append({"step": step, "what": what, "value": value, "status": status})
        self.write()

    def write(self) -> None:
        table = markdown_table(["step", "what", "value", "status"],
                               [[r["step"], r["what"], _shown(r["value"]), r["status"]] for r in self.rows])
        head = (f"# benchmarks/gpu_all.sh ({self.mode}), "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.started))}, "
                f"{time.time() - self.started:.0f} s so far\n\n")
        (self.out / "gpu_all.md").write_text(head + table + "\n")
        (self.out / "gpu_all.json").write_text(json.dumps({"mode": self.mode, "rows": self.rows}, indent=2))


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} x{v:g}" for k, v in value.items()) or "none"
    return str(value)


# -- step 2: a folder of JPEGs ----------------------------------------------------------
def _write_jpegs(job) -> None:
    from PIL import Image

    folder, start, stop = job
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
        coarse.resize((178, 218), Image.BICUBIC).save(Path(folder) / f"{i + 1:06d}.jpg", quality=90)


def make_jpegs(folder: Path, count: int, workers: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunk = -(-count // workers)
    jobs = [(str(folder), s, min(s + chunk, count)) for s in range(0, count, chunk)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_write_jpegs, jobs)
    return time.perf_counter() - start


# -- step 4: a probe in the training loop -------------------------------------------------
class LoopProbe:
    """Stands in for the loop's ``run_iteration`` (``torchgan_sagan.trainer.resumable``)
    and measures windows of iterations after ``warm`` of them: ``timed`` for images/s and
    peak memory, then ``profiled`` under torch.profiler, then ``synced`` with every host
    sync counted. On a CPU only the first is measured."""

    def __init__(self, batch: int, warm: int, timed: int, profiled: int, synced: int, cuda: bool) -> None:
        self.batch, self.cuda = batch, cuda
        self.marks = [warm, warm + timed, warm + timed + profiled, warm + timed + profiled + synced]
        self.count, self.found, self.original = 0, {}, resumable.run_iteration
        self._clock, self._profiler, self._syncs, self._sync_ctx = 0.0, None, None, None

    def _wait(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, trainer):
        i, (w, t, p, s) = self.count, self.marks
        if i == w:
            self._wait()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self._clock = time.perf_counter()
        if i == t:
            self._wait()
            seconds = time.perf_counter() - self._clock
            self.found["images_per_s"] = (t - w) * self.batch / seconds
            if self.cuda:
                self.found["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
                self._start_profiler()
        if i == p and self.cuda:
            self._stop_profiler(p - t)
            self._start_sync_count()
        if i == s and self.cuda:
            self._stop_sync_count(s - p)
        result = self.original(trainer)
        self.count += 1
        return result

    def _start_profiler(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        self._profiler.__enter__()
        self._clock = time.perf_counter()

    def _stop_profiler(self, iterations: int) -> None:
        self._wait()
        wall_us = (time.perf_counter() - self._clock) * 1e6
        self._profiler.__exit__(None, None, None)
        events = self._profiler.key_averages()
        busy_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                             "cudaLaunchKernelExC", "cudaGraphLaunch"))
        self.found["gpu_busy_share"] = busy_us / wall_us
        self.found["kernel_launches_per_iter"] = launches / iterations

    def _start_sync_count(self) -> None:
        self._syncs = []
        self._sync_ctx = contextlib.ExitStack()
        seen = self._sync_ctx.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        self._sync_ctx.enter_context(gpu_check._waits_counted(self._syncs))
        self._seen = seen
        torch.cuda.set_sync_debug_mode("warn")

    def _stop_sync_count(self, iterations: int) -> None:
        torch.cuda.set_sync_debug_mode("default")
        found = Counter(gpu_check._where(w) for w in self._seen if "synchronizing" in str(w.message))
        self._sync_ctx.close()
        found += Counter(self._syncs)
        self.found["host_syncs_per_iter"] = sum(found.values()) / iterations
        self.found["host_syncs_where"] = {k: v / iterations for k, v in found.most_common(4)}


@contextlib.contextmanager
def probing(probe: LoopProbe):
    resumable.run_iteration = probe
    try:
        yield probe
    finally:
        resumable.run_iteration = probe.original


def _celeba():
    import importlib.util

    spec = importlib.util.spec_from_file_location("celeba_example", ROOT / "examples" / "celeba.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_through_celeba(celeba, argv: List[str], probe: LoopProbe, torchgan_tutorial: bool) -> dict:
    """``examples/celeba.py``'s ``main(argv)`` in this process, its loop probed; with
    ``torchgan_tutorial`` its trainer gets torchgan's tutorial network and losses."""
    make_trainer = celeba.make_trainer
    if torchgan_tutorial:
        def tutorial(cfg, **kwargs):
            params = tutorial_network_params(step_channels=cfg.step_channels, image_size=cfg.image_size,
                                             channels=cfg.image_channels, encoding_dims=cfg.encoding_dims)
            return make_trainer(cfg, network_params=params, losses=tutorial_losses(), **kwargs)

        celeba.make_trainer = tutorial
    try:
        with probing(probe):
            status = celeba.main(argv)
    finally:
        celeba.make_trainer = make_trainer
    if status != 0:
        raise RuntimeError(f"examples/celeba.py exited {status}")
    if probe.count < probe.marks[-1]:
        raise RuntimeError(f"the epoch had {probe.count} iterations, fewer than the {probe.marks[-1]} measured")
    return probe.found


# -- step 6: the user's commands ----------------------------------------------------------
def command(args: List[str], log: Path) -> str:
    """Run ``args`` (a Python command line) from the repository root; its output goes
    to ``log``; a non-zero exit raises with the output's last lines."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(f"$ python {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"python {' '.join(args[:2])} ... exited {result.returncode}: {tail}")
    return result.stdout


# -- the run ------------------------------------------------------------------------------
def run(out: Path, mode: str) -> int:
    sizes = SIZES[mode]
    cuda = mode == "gpu"
    if cuda and not torch.cuda.is_available():
        print("gpu_all: error: CUDA is not available here; rehearse on the CPU with --rehearse", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, mode)
    workers = os.cpu_count() or 1
    folder, cache, runs = out / "jpegs", out / "cache", out / "runs"
    shutil.rmtree(runs, ignore_errors=True)  # a second run into the same OUT trains afresh, not on resumes
    width = [] if sizes["step_channels"] is None else ["--step-channels", str(sizes["step_channels"])]
    celeba = _celeba()

    def environment():
        import torchgan
        import torchvision

        report.add("environment", "torch, torchvision, torchgan",
                   f"{torch.__version__}, {torchvision.__version__}, {torchgan.__version__}")
        report.add("environment", "device", torch.cuda.get_device_name() if cuda else f"CPU, {workers} cores, "
                   f"{torch.get_num_threads()} threads")

    def jpegs():
        seconds = make_jpegs(folder, sizes["images"], workers)
        report.add("jpeg folder", f"{sizes['images']} JPEGs 178x218, images/s written", sizes["images"] / seconds)

    def image_cache():
        built = build_image_cache(find_images(folder), 64, crop=160, channels=3, cache_dir=cache, workers=workers,
                                  progress=False)
        report.add("image cache", f"{len(built)} images decoded to 64x64, images/s", len(built) / built.seconds)

    def train():
        figures = ["images_per_s", "peak_memory_mib", "gpu_busy_share", "kernel_launches_per_iter",
                   "host_syncs_per_iter", "host_syncs_where"]
        for index, (name, config, flags, torchgan_tutorial) in enumerate(TRAIN_RUNS):
            probe = LoopProbe(sizes["batch"], sizes["warm"], sizes["timed"], sizes["profiled"], sizes["synced"],
                              cuda)
            needed = probe.marks[-1] + 1
            argv = ["--config", config, "--data-root", str(folder), "--crop", "160", "--cache-dir", str(cache),
                    "--device", device,
                    "--out", str(runs / f"{index}-{config}"), "--epochs", "1",
                    "--batch-size", str(sizes["batch"]), "--verbose", *width, *flags]
            if not cuda:
                argv += ["--max-images", str(needed * sizes["batch"])]
            start = time.perf_counter()
            found = train_through_celeba(celeba, argv, probe, torchgan_tutorial)
            for figure in figures:
                report.add(f"train: {name}", figure, found.get(figure), "ok" if figure in found else NOT_RUN)
            report.add(f"train: {name}", "seconds for the whole launch", time.perf_counter() - start)

    def graphs():
        if not cuda:
            for what in ("eager ms/iter", "graphed ms/iter", "max relative weight diff, graphs vs eager",
                         "the same, eager vs eager", "host syncs per replayed iteration"):
                report.add("cuda graphs: sagan_celeba_64", what, None, NOT_RUN)
            return
        found = gpu_check.check_cuda_graphs("sagan_celeba_64", sizes["batch"], sizes["graph_iters"],
                                            torch.device("cuda"), out / "graph_check")
        if "refused" in found:
            raise RuntimeError("refused: " + "; ".join(found["refused"]))
        status = "ok" if "fell_back" not in found else "fell back: " + "; ".join(found["fell_back"])
        for what, key in (("eager ms/iter", "eager_ms"), ("graphed ms/iter", "graph_ms"),
                          ("max relative weight diff, graphs vs eager", "max_relative_weight_diff"),
                          ("the same, eager vs eager", "eager_vs_eager_weight_diff"),
                          ("host syncs per replayed iteration", "syncs_per_step")):
            report.add("cuda graphs: sagan_celeba_64", what, found[key], status)

    def end_to_end():
        run_dir, log = runs / "end_to_end", out / "end_to_end.log"
        common = ["examples/celeba.py", "--data-root", str(folder), "--crop", "160", "--cache-dir", str(cache),
                  "--device", device,
                  "--out", str(run_dir), "--max-images", str(sizes["e2e_images"]), "--batch-size",
                  str(sizes["batch"]), "--verbose", *width]
        start = time.perf_counter()
        command([*common, "--epochs", "2"], log)
        resumed = command([*common, "--epochs", "3", "--resume"], log)
        if "Resuming at epoch 3 of 3" not in resumed:
            raise RuntimeError("the resumed launch did not continue at epoch 3")
        for picture in ("samples/final.png", "real_vs_fake.png", "nearest.png"):
            if not (run_dir / picture).is_file():
                raise RuntimeError(f"the run left no {picture}")
        report.add("end to end", "celeba.py --data-root, then --resume: seconds", time.perf_counter() - start)
        start = time.perf_counter()
        command(["-m", "torchgan_sagan.generate", str(run_dir), "--device", device, "--out",
                 str(out / "generated"), "--num", str(min(64, sizes["samples"]))], log)
        command(["-m", "torchgan_sagan.evaluate", str(run_dir), "--device", device, "--real", str(folder),
                 "--max-real", str(sizes["samples"]), "--num", str(sizes["samples"]),
                 "--no-inception"], log)  # the device machine reaches no address to fetch weights from
        report.add("end to end", "generate, evaluate: seconds", time.perf_counter() - start)

    def standard_scores():
        sys.path.insert(0, str(ROOT / "tests"))
        from standin_inception import write_standin_weights

        weights = write_standin_weights(out / "standin_inception.pth")
        start = time.perf_counter()
        n = sizes["standard_samples"]
        said = command(["-m", "torchgan_sagan.evaluate", str(runs / "end_to_end"), "--device", device, "--real",
                        str(folder), "--crop", "160", "--num-samples", str(n), "--max-real",
                        str(sizes["standard_real"]), "--inception-weights", str(weights),
                        "--out", str(out / "standard_scores.json")], out / "standard_scores.log")
        for row in (protocol_name("FID", n), "KID", "Inception Score", "precision / recall", "density / coverage"):
            if row not in said:
                raise RuntimeError(f"evaluate printed no {row!r} row")
        report.add("standard scores", f"evaluate at {n:,} samples, stand-in weights: seconds",
                   time.perf_counter() - start)

    steps: Dict[str, Callable[[], None]] = {"environment": environment, "jpeg folder": jpegs,
                                            "image cache": image_cache, "train": train, "cuda graphs": graphs,
                                            "end to end": end_to_end, "standard scores": standard_scores}
    for name, step in steps.items():
        print(f"gpu_all: {name}", flush=True)
        try:
            step()
        except Exception as err:  # noqa: BLE001 (any failure ends the run, named in its row)
            traceback.print_exc()
            report.add(name, "FAILED", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                       "failed")
            print(f"gpu_all: step {name!r} failed; the rows so far are in {out / 'gpu_all.md'}", file=sys.stderr)
            return 1
    print((out / "gpu_all.md").read_text())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Every GPU figure of docs/gpu.md in one run (see the module's "
                                "docstring); --rehearse runs the same steps on the CPU with tiny sizes.")
    p.add_argument("out", type=Path, help="folder for gpu_all.md, gpu_all.json, the logs and the runs")
    p.add_argument("--rehearse", action="store_true")
    args = p.parse_args(argv)
    return run(args.out, "rehearse" if args.rehearse else "gpu")


if __name__ == "__main__":
    sys.exit(main())
