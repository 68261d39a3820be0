"""What a run shows while it trains: one progress bar over the whole run, torchgan's
console output in a log file, and attention in TensorBoard.

:class:`RunProgress` wraps the data loader handed to torchgan's ``Trainer`` and draws
a single bar over every remaining iteration, with the running losses, the latest
metric values and the time left. :class:`AttentionLogger` joins the ``Trainer``'s
end-of-epoch loggers and writes, each epoch, the attention maps of a fixed sample as
an image and the gain ``gamma`` of every attention layer (how much of its output
each layer takes from attention) as scalars.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Union

import torch

from ..layers import SelfAttention2d
from ..visualize import attention_grid

__all__ = ["RunProgress", "AttentionLogger", "torchgan_output"]


@contextlib.contextmanager
def torchgan_output(log_file: Optional[Path], *, verbose: bool = False) -> Iterator[None]:
    """Where what torchgan prints while training goes (its epoch summaries, "Saving
    Model at ..."): the console when ``verbose``, else appended to ``log_file`` (or
    dropped, when it is ``None``). Progress bars write to stderr and stay visible."""
    if verbose:
        yield
        return
    # Line-buffered: the log's tail is there as the run goes, and after a kill.
    with (open(log_file, "a", buffering=1) if log_file is not None else open(os.devnull, "w")) as sink:
        with contextlib.redirect_stdout(sink):
            yield


class RunProgress:
    """A loader seen through one progress bar over the whole run (``show=False``: no
    bar, as on the non-zero ranks of a distributed run). It passes ``batch_size`` and
    ``sampler`` through, which torchgan's and the distributed trainer read.

    ``show="auto"``: the bar where stderr is a terminal; elsewhere (a batch system's log
    file, a pipe), where a bar's carriage returns make one endless line, one line per
    epoch on stdout instead, and one every ``every_seconds`` within a long epoch. The
    stream is the stdout of the moment the progress is made (torchgan's own output may
    be sent to a file later)."""

    def __init__(self, loader, trainer, *, show: Union[bool, str] = True, every_seconds: float = 300.0) -> None:
        self.loader = loader
        self.trainer = trainer
        self.batch_size = loader.batch_size
        self.sampler = getattr(loader, "sampler", None)
        if show == "auto":
            show = "bar" if sys.stderr.isatty() else "lines"
        self.show = show is True or show == "bar"
        self.lines = show == "lines"
        self.stream, self.every_seconds = sys.stdout, every_seconds
        self.bar = None
        self.epoch: Optional[int] = None
        self._said_at = self._epoch_start = self._started = time.monotonic()
        self._batches = 0  # served in this launch

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the loader (or its sampler), as the trainer's loop calls it."""
        target = getattr(self.loader, "set_epoch", None) or getattr(self.sampler, "set_epoch", None)
        if target is not None:
            target(epoch)

    def __getattr__(self, name: str):
        if name == "set_position" and hasattr(self.__dict__.get("loader"), "set_position"):
            return self.loader.set_position  # a resume in mid-epoch skips without decoding
        raise AttributeError(name)

    def _open(self):
        from tqdm import tqdm

        remaining = max(0, self.trainer.epochs - self.trainer.start_epoch)
        done = getattr(self.trainer, "start_batch", 0)
        return tqdm(total=max(0, remaining * len(self.loader) - done), initial=0, unit="it", dynamic_ncols=True, disable=not self.show)

    def postfix(self) -> Optional[str]:
        """The epoch, the running mean losses and the latest metric values; ``None``
        while the losses are still device scalars (they are read back every
        ``log_every`` iterations, see :mod:`torchgan_sagan.trainer.deferred_logging`, and the
        bar does not force a read in between)."""
        info = self.trainer.loss_information
        if any(isinstance(v, torch.Tensor) for v in info.values()):
            return None
        parts = [f"epoch {self.epoch}/{self.trainer.epochs}"]
        if info["generator_iters"]:
            parts.append(f"G {info['generator_losses'] / info['generator_iters']:.3f}")
        if info["discriminator_iters"]:
            parts.append(f"D {info['discriminator_losses'] / info['discriminator_iters']:.3f}")
        for name, metric in (self.trainer.metrics or {}).items():
            history = getattr(metric, "history", None)
            if history:
                value = history[-1]
                value = value.get(getattr(metric, "logged_key", None) or "", value) if isinstance(value, dict) else value
                if isinstance(value, (int, float)):
                    parts.append(f"{name} {value:.3g}")
        return ", ".join(parts)

    def __iter__(self) -> Iterator:
        if self.bar is None:
            self.bar = self._open()
            self.epoch = self.trainer.start_epoch
        elif self.lines:  # the previous epoch has ended, its losses read back
            self._say(f"epoch {self.epoch}/{self.trainer.epochs} done")
        self.epoch += 1
        self._epoch_start = time.monotonic()
        for done, batch in enumerate(self.loader, 1):
            yield batch
            self._batches += 1
            self.bar.update(1)
            postfix = self.postfix()
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
            if self.lines and time.monotonic() - self._said_at >= self.every_seconds:
                self._say(f"epoch {self.epoch}/{self.trainer.epochs}, batch {done}/{len(self.loader)}")

    def _say(self, what: str) -> None:
        """One line: ``what``, the iteration, the running losses, the speed."""
        now = time.monotonic()
        postfix = self.postfix()
        losses = ", ".join(p for p in (postfix or "").split(", ") if not p.startswith("epoch "))
        print(f"{what}: iteration {getattr(self.trainer, 'iteration', self._batches)}" + (f", {losses}" if losses else "")
              + f", {now - self._epoch_start:.0f} s, {self._batches / max(now - self._started, 1e-9):.2f} it/s",
              file=self.stream, flush=True)
        self._said_at = now

    def close(self, *, failed: bool = False) -> None:
        """End the bar (or, without one, say the last epoch's line); ``failed``: erase
        the bar, so that the error that ended the run stands alone."""
        if self.bar is not None:
            if self.lines and not failed:
                self._say(f"epoch {self.epoch}/{self.trainer.epochs} done")
            if failed:
                self.bar.leave = False
            self.bar.close()


class AttentionLogger:
    """End-of-epoch TensorBoard entries for torchgan's ``Trainer``: the attention maps
    of the generator on fixed noise ``z`` (and ``labels``) as an image, and each
    attention layer's ``gamma`` in G and D. :meth:`attach` adds it to a trainer's
    logger; without TensorBoard logging it does nothing. Its pictures thin out with the
    sample grids' (:func:`~torchgan_sagan.trainer.deferred_logging.pictures_due`)."""

    draws_pictures = True

    def __init__(self, trainer, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> None:
        self.trainer = trainer
        self.z = z
        self.labels = labels
        self.step = trainer.start_epoch + 1

    @classmethod
    def attach(cls, trainer, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> "AttentionLogger":
        logger = cls(trainer, z, labels)
        trainer.logger.logger_end_epoch.append(logger)
        return logger

    def gammas(self) -> dict:
        """``{"generator/model.6": gamma, ...}`` for every attention layer."""
        values = {}
        for net in self.trainer.model_names:
            for name, module in getattr(self.trainer, net).named_modules():
                if isinstance(module, SelfAttention2d):
                    values[f"{net}/{name}"] = float(module.gamma.detach().float().reshape(-1)[0])
        return values

    def __call__(self, *args) -> None:
        writer = getattr(self.trainer.logger, "writer", None)
        if writer is not None:
            for name, value in self.gammas().items():
                writer.add_scalar(f"attention_gamma/{name}", value, self.step)
            generator = self.trainer.generator
            if getattr(generator, "attn_resolutions", ()):
                writer.add_image("attention_maps", attention_grid(generator, self.z, self.labels), self.step)
        self.step += 1
