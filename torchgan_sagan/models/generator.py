r"""The SAGAN generator as a torchgan model.

It follows the DCGAN layout of ``torchgan.models.DCGANGenerator`` (4x4 stride-2
transposed convolutions, widths halving towards the image) and takes the same
argument names, with what SAGAN adds: every convolution spectrally normalized,
self-attention after the blocks at ``attn_resolutions``, BatchNorm, a ``tanh`` output.
For a 64x64 image and ``step_channels = d``::

    z -> 4x4x8d -> 8x8x4d -> 16x16x2d -> 32x32xd -> 64x64xC
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torchgan.models import Generator

from ..checks import check_classes, check_image_size, check_labels, check_positive_int
from .ema import WeightEMA, follow_optimizer_steps, optimizer_trains
from ..layers import ConditionalBatchNorm2d, ConditionalSequential, apply_spectral_norm
from .options import EMAOptions, takes_options
from .common import NetOptionsMixin, init_weights, run_recording_attention, unwrap

__all__ = ["SAGANGenerator"]

#: Standing statistics of the moving average: batch size and seed of the noise.
STATISTICS_BATCH = 64
STATISTICS_SEED = 2**31 - 1


def _refresh_before_saving(generator: "SAGANGenerator", prefix: str, keep_vars: bool) -> None:
    # A state_dict pre-hook: checkpoints hold statistics that fit the averaged weights.
    generator.refresh_average_statistics()


@takes_options("G")
class SAGANGenerator(NetOptionsMixin, Generator):
    r"""SAGAN generator: spectrally normalized transposed convolutions, BatchNorm,
    self-attention, ``tanh`` output.

    Args:
        encoding_dims: size of the noise vector z.
        out_size: height and width of the images: base x 2**k, a power of 2 from 16 to
            256 or another of :data:`~torchgan_sagan.checks.IMAGE_SIZES` (28, 48, 96, ...).
        out_channels: channels of the images.
        step_channels: width unit d; the first block (4x4; 7x7 for 28, 6x6 for 48) has
            ``d * out_size / 8`` channels (``/ 14`` and ``/ 12`` there) and every
            upsampling halves it, down to d at ``out_size / 2``.
        batchnorm: BatchNorm after every inner transposed convolution.
        nonlinearity: inner activation; ``ReLU`` if ``None``.
        last_nonlinearity: output activation; ``Tanh`` if ``None``.
        num_classes: 0 for an unconditional G; otherwise the number of classes, and
            every BatchNorm is a :class:`ConditionalBatchNorm2d` (the paper's
            ImageNet model). Call ``G(z, labels)``.
        label_type: torchgan's label type: ``"generated"`` (default when
            conditional: torchgan's losses draw random labels for the fakes) or
            ``"required"`` (the fakes get the real batch's labels).

    With a moving average (``ema_decay``), G runs the average in eval mode and its
    own weights in training mode; set ``G.use_ema = False`` to run the trained
    weights in eval mode too. Before the average draws (or is saved) after its
    weights changed, its BatchNorm statistics are recomputed
    (:meth:`refresh_average_statistics`).
    """

    def __init__(self, encoding_dims: int = 100, out_size: int = 64, out_channels: int = 3,
                 step_channels: int = 64, *, batchnorm: bool = True, nonlinearity: Optional[nn.Module] = None,
                 last_nonlinearity: Optional[nn.Module] = None, num_classes: int = 0,
                 label_type: Optional[str] = None, **options) -> None:
        check_positive_int("encoding_dims", encoding_dims)
        label_type = check_classes("SAGANGenerator", num_classes, label_type, "generated")
        super().__init__(encoding_dims, label_type)
        self.out_size = check_image_size("out_size", out_size)
        self.out_channels = check_positive_int("out_channels", out_channels)
        widths, groups = self._setup(out_size, step_channels, num_classes, options)
        ema = self.ema_options = groups[EMAOptions]
        if num_classes and not batchnorm:
            raise ValueError("SAGANGenerator: a class-conditional G conditions through its "
                             "BatchNorm layers; keep batchnorm=True with num_classes")
        act = nn.ReLU() if nonlinearity is None else nonlinearity
        last_act = nn.Tanh() if last_nonlinearity is None else last_nonlinearity
        layers = self._layers(widths, act, last_act, batchnorm)
        self.model = apply_spectral_norm(ConditionalSequential(*layers))
        self.ema = None if ema.ema_decay is None else WeightEMA(self.model, ema.ema_decay, ema.ema_start)
        #: In eval mode, run the moving average (True) or the trained weights (False).
        self.use_ema = True
        if self.ema is not None:
            follow_optimizer_steps(self)
            self.register_state_dict_pre_hook(_refresh_before_saving)
        self._finish()

    def _layers(self, widths: Dict[int, int], act: nn.Module, last_act: nn.Module, batchnorm: bool
                ) -> List[nn.Module]:
        """The layer stack: a transposed convolution per resolution (4, 8, ...; 7, 14
        for 28), each followed by (conditional) BatchNorm, the activation and attention
        where asked. The first maps the 1x1 noise to the base's b x b with a b x b kernel."""
        resolutions = sorted(widths)  # base, ..., out_size/2
        layers: List[nn.Module] = []
        in_ch = self.encoding_dims
        for r in resolutions:
            first = r == resolutions[0]
            layers.append(nn.ConvTranspose2d(in_ch, widths[r], r if first else 4, stride=1 if first else 2,
                                             padding=0 if first else 1, bias=not batchnorm))
            if batchnorm:
                layers.append(self._batchnorm(widths[r]))
            layers.append(act)
            if r in self.attn_resolutions:
                layers.append(self._attention_layer(widths[r]))
            in_ch = widths[r]
        return layers + [nn.ConvTranspose2d(in_ch, self.out_channels, 4, 2, 1), last_act]

    def _batchnorm(self, channels: int) -> nn.Module:
        """BatchNorm, conditional on the class for a class-conditional G."""
        return ConditionalBatchNorm2d(channels, self.num_classes) if self.num_classes else nn.BatchNorm2d(channels)

    def __setstate__(self, state) -> None:
        # Copies (copy.deepcopy, pickle) follow their own optimizer steps too.
        super().__setstate__(state)
        if self.__dict__.get("_modules", {}).get("ema") is not None:
            follow_optimizer_steps(self)

    def _weight_initializer(self) -> None:
        """Re-initialize all weights (see :func:`~torchgan_sagan.models.common.init_weights`);
        the average restarts from them."""
        init_weights(self.model)
        if self.ema is not None:
            unwrap(self.ema).copy_(unwrap(self.model))
            unwrap(self.ema).reset_steps()

    def _ema_after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.ema is not None and optimizer_trains(optimizer, next(self.model.parameters())):
            unwrap(self.ema).update(unwrap(self.model))

    @torch.no_grad()
    def refresh_average_statistics(self) -> None:
        """Give the moving average standing BatchNorm statistics
        (:meth:`WeightEMA.recompute_statistics`) if its weights changed since they were
        last computed; nothing otherwise, or without an average.

        The average runs on ``ema_statistics_batches`` batches of 64 noise vectors (and
        uniformly drawn classes for a conditional G) from a generator of its own, seeded
        the same every time: it touches neither the global random state nor spectral
        norm's estimates, so training and an exact resume are unchanged, and every
        process of a data-parallel run computes the same statistics.
        """
        ema = unwrap(self.ema) if self.ema is not None else None
        if ema is None or not ema.statistics_stale:
            return
        device = ema.steps.device
        # Drawn on the CPU and copied over: the same numbers on every device, and no
        # generator of the accelerator's to create.
        rng = torch.Generator().manual_seed(STATISTICS_SEED)

        def run_batch():
            z = torch.randn(STATISTICS_BATCH, self.encoding_dims, generator=rng).to(device, non_blocking=True)
            labels = ([torch.randint(self.num_classes, (STATISTICS_BATCH,), generator=rng).to(device, non_blocking=True)]
                      if self.num_classes else [])
            self._run(ema.model, self._noise_as_map(z), *labels)

        ema.recompute_statistics(run_batch, self.ema_options.ema_statistics_batches)

    def _sampling_layers(self) -> nn.Module:
        """:attr:`layers`, with the average's statistics brought up to date first when
        it is the one that runs."""
        layers = self.layers
        if self.ema is not None and layers is unwrap(self.ema).model:
            self.refresh_average_statistics()
        return layers

    @property
    def layers(self) -> nn.Module:
        """The layer stack that runs now: the moving average in eval mode (when G has
        one and ``use_ema`` is on), the trained weights otherwise."""
        if self.ema is not None and self.use_ema and not self.training:
            return unwrap(self.ema).model
        return self.model

    def _noise_as_map(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 4) or z.size(1) != self.encoding_dims:
            raise ValueError(
                f"SAGANGenerator(encoding_dims={self.encoding_dims}) expects noise of "
                f"shape (B, {self.encoding_dims}), got {tuple(z.shape)}"
            )
        return z.reshape(z.size(0), self.encoding_dims, 1, 1)  # (B, Z, 1, 1)

    def _labels(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return check_labels("SAGANGenerator", self.num_classes, labels, z.size(0))

    def forward(
        self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, feature_matching: bool = False
    ) -> torch.Tensor:
        """Map noise (B, encoding_dims) to images (B, out_channels, out_size, out_size);
        a conditional G also takes ``labels`` (B,), the class of each image.

        ``feature_matching`` is accepted for torchgan compatibility and ignored.
        """
        return self._run(self._sampling_layers(), self._noise_as_map(z), *self._labels(z, labels))

    def sampler(self, sample_size: int, device) -> List[torch.Tensor]:
        """torchgan's inputs for sample grids: noise, and for a conditional G the
        labels 0, 1, ..., num_classes - 1, 0, 1, ... (a class per grid column when the
        grid has ``num_classes`` columns)."""
        z = torch.randn(sample_size, self.encoding_dims, device=device)
        if not self.num_classes:
            return [z]
        return [z, torch.arange(sample_size, device=device) % self.num_classes]

    def attention_maps(
        self, z: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Generate images and return them with every attention block's map.

        Returns ``(images, {resolution: attn})`` with ``attn`` of shape
        (B, N_queries, N_keys) as described in :class:`SelfAttention2d`.
        """
        labels = self._labels(z, labels)
        return run_recording_attention(unwrap(self._sampling_layers()), self._noise_as_map(z), *labels)
