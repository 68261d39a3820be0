r"""SAGAN generator and discriminator as torchgan models.

Both nets follow the DCGAN layout of ``torchgan.models.DCGANGenerator`` /
``DCGANDiscriminator`` (4x4 stride-2 convolutions, widths doubling towards the
4x4 end) and take the same argument names, with what SAGAN adds:

- every convolution spectrally normalized, in G as well as in D;
- self-attention (:class:`~torchgan_sagan.layers.SelfAttention2d`) after the blocks
  whose feature maps have the resolutions in ``attn_resolutions``;
- D ends in a raw logit per image (no sigmoid, no tanh), as the hinge loss needs;
- G uses BatchNorm and ends in ``tanh``.

Options beyond the baseline:

- ``num_classes``: class-conditional SAGAN, as in the paper's ImageNet model:
  conditional BatchNorm in G (:class:`~torchgan_sagan.layers.ConditionalBatchNorm2d`)
  and a projection discriminator (Miyato & Koyama 2018), whose logit adds
  ``<embed(y), sum_xy h(x)>`` to the unconditional one;
- ``ema_decay`` (G): a moving average of G's weights that G runs in eval mode
  (:mod:`torchgan_sagan.ema`);
- ``diffaugment`` (D): differentiable augmentation of every image D sees in training
  (:mod:`torchgan_sagan.augment`).

For a 64x64 image and ``step_channels = d``::

    G: z -> 4x4x8d -> 8x8x4d -> 16x16x2d -> 32x32xd -> 64x64xC
    D: 64x64xC -> 32x32xd -> 16x16x2d -> 8x8x4d -> 4x4x8d -> logit
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torchgan.models import Discriminator, Generator

from ._validation import check_choice, check_image_size, check_positive_int
from .augment import DiffAugment
from .ema import WeightEMA, follow_optimizer_steps, optimizer_trains
from .layers import (
    ATTENTION_LAYOUTS,
    ConditionalBatchNorm2d,
    ConditionalSequential,
    SelfAttention2d,
    apply_spectral_norm,
    refresh_spectral_norm,
)

__all__ = ["SAGANGenerator", "SAGANDiscriminator", "default_attn_resolutions"]


def default_attn_resolutions(image_size: int) -> Tuple[int, ...]:
    """One attention block at 32x32 features (at ``image_size // 2`` for smaller images).

    The paper's ablation (Table 1) found attention on the larger feature maps (32, 64)
    better than on the small ones (8, 16).
    """
    return (min(32, image_size // 2),)


def _feature_widths(image_size: int, step_channels: int) -> Dict[int, int]:
    """Channels of the inner feature maps by resolution (4, 8, ..., image_size // 2).

    The same in G and D: ``step_channels`` at ``image_size // 2``, doubling at every
    halving of the resolution.
    """
    resolutions = [2**k for k in range(2, image_size.bit_length() - 1)]
    return {r: step_channels * image_size // (2 * r) for r in resolutions}


def _check_attention(
    net: str,
    attn_resolutions: Iterable[int],
    widths: Dict[int, int],
    step_channels: int,
    arg: str = "attn_resolutions",
) -> Tuple[int, ...]:
    resolutions = tuple(sorted(set(attn_resolutions)))
    for r in resolutions:
        if r not in widths:
            raise ValueError(
                f"{net}: {arg} contains {r!r}, but this net's feature maps "
                f"have resolutions {sorted(widths)}; choose from those"
            )
        if widths[r] < 8:
            raise ValueError(
                f"{net}: the attention block at {r}x{r} would see {widths[r]} channels, "
                f"and its query/key width is channels // 8 = 0. Raise step_channels "
                f"(now {step_channels}) or attend at a resolution with more channels"
            )
    return resolutions


def _run_recording_attention(
    layers: Sequence[nn.Module], x: torch.Tensor, labels: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
    """Run ``layers`` in order, collecting each attention block's map by resolution."""
    maps: Dict[int, torch.Tensor] = {}
    for layer in layers:
        if isinstance(layer, SelfAttention2d):
            x, maps[x.size(-1)] = layer(x, return_attn=True)
        else:
            x = ConditionalSequential.run_layer(layer, x, labels)
    return x, maps


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside an ``nn.DataParallel`` (which torchgan's ``ParallelTrainer``
    puts around each child of a net), or ``module`` itself."""
    return module.module if isinstance(module, nn.DataParallel) else module


#: The label types of torchgan's models (see ``torchgan.models.Generator``).
LABEL_TYPES = ("none", "generated", "required")


def _check_classes(net: str, num_classes: int, label_type: Optional[str], default: str) -> str:
    """Validate ``num_classes`` against ``label_type``; return the label type to use."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"{net}: num_classes must be 0 (unconditional) or a positive "
                         f"number of classes, got {num_classes!r}")
    if label_type is None:
        return default if num_classes else "none"
    check_choice("label_type", label_type, LABEL_TYPES)
    if num_classes == 0 and label_type != "none":
        raise ValueError(f"{net}: label_type={label_type!r} needs a class-conditional net; "
                         f"pass num_classes (the number of classes) as well")
    if num_classes and label_type == "none":
        raise ValueError(f"{net}: a class-conditional net (num_classes={num_classes}) needs "
                         f"labels; use label_type='generated' or 'required'")
    return label_type


def _check_labels(net: str, num_classes: int, labels: Optional[torch.Tensor], batch: int) -> Tuple[torch.Tensor, ...]:
    """Validate the labels passed to a net; return them as extra arguments for its
    layers: ``(labels,)`` for a conditional net, ``()`` for an unconditional one."""
    if not num_classes:
        if labels is not None:
            raise ValueError(f"{net} got labels but is unconditional; build it "
                             f"with num_classes to condition on classes")
        return ()
    if labels is None:
        raise ValueError(f"{net} is class-conditional (num_classes={num_classes}) and needs "
                         f"labels: call it as net(x, labels) with labels of shape ({batch},)")
    if labels.shape != (batch,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{net} expects integer labels of shape ({batch},), got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}")
    if labels.numel():
        low, high = (int(v) for v in torch.aminmax(labels))  # one pass, one device sync
        if low < 0 or high >= num_classes:
            raise ValueError(f"{net}: labels must lie in [0, {num_classes}), got values from "
                             f"{low} to {high}")
    return (labels,)


def _init_weights(net: nn.Module) -> None:
    """Xavier-uniform weights, zero biases, (conditional) BatchNorm at identity; then
    re-estimate SN.

    Spectrally normalized layers are initialized through their unnormalized
    ``original`` tensor (writing to ``module.weight`` would only change a temporary).
    The attention gain ``gamma`` keeps its initial 0.
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
                weight = (
                    m.parametrizations.weight.original
                    if parametrize.is_parametrized(m, "weight")
                    else m.weight
                )
                nn.init.xavier_uniform_(weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ConditionalBatchNorm2d):
                m.reset_parameters()
    refresh_spectral_norm(net)


#: Mixed-precision modes of the nets' ``amp`` option.
AMP_DTYPES = {"bf16": torch.bfloat16}


def _check_amp(amp: Optional[str]) -> Optional[str]:
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(
            f"amp must be None or one of {sorted(AMP_DTYPES)}, got {amp!r} (fp16 would need "
            f"loss scaling inside torchgan's losses, which they do not do; bf16 needs none)"
        )
    return amp


class _SpeedOptions:
    """The nets' speed options: channels_last memory format, ``torch.compile`` of the
    layer stack, and autocast. Each is off unless asked for."""

    def _set_speed_options(self, channels_last: bool, compile: Union[bool, str], amp: Optional[str]) -> None:
        self.amp = _check_amp(amp)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            # In place, so parameter names and state_dict keys stay the same. A string
            # names the torch.compile backend (default "inductor").
            self.model.compile(**({"backend": compile} if isinstance(compile, str) else {}))

    def _run(self, layers: nn.Module, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp is None:
            return layers(x, *labels)
        with torch.autocast(x.device.type, dtype=AMP_DTYPES[self.amp]):
            return layers(x, *labels).float()


class SAGANGenerator(_SpeedOptions, Generator):
    r"""SAGAN generator: spectrally normalized transposed convolutions, BatchNorm,
    self-attention, ``tanh`` output.

    Args:
        encoding_dims: size of the noise vector z.
        out_size: height and width of the images, a power of 2 from 16 to 256.
        out_channels: channels of the images.
        step_channels: width unit d; the 4x4 block has ``d * out_size / 8`` channels
            and every upsampling halves it, down to d at ``out_size / 2``.
        attn_resolutions: feature-map resolutions followed by self-attention, each
            one of 4, 8, ..., ``out_size // 2``. Default: :func:`default_attn_resolutions`.
        attn_layout: ``"official"`` (the paper's code) or ``"torchgan"``.
        attn_fused: attention through the fused kernel (see :class:`SelfAttention2d`).
        batchnorm: BatchNorm after every inner transposed convolution.
        nonlinearity: inner activation; ``ReLU`` if ``None``.
        last_nonlinearity: output activation; ``Tanh`` if ``None``.
        num_classes: 0 for an unconditional G; otherwise the number of classes, and
            every BatchNorm is a :class:`ConditionalBatchNorm2d`. Call ``G(z, labels)``.
        label_type: torchgan's label type: ``"generated"`` (default when
            conditional: torchgan's losses draw random labels for the fakes) or
            ``"required"`` (the fakes get the real batch's labels).
        ema_decay: keep a moving average of the weights with this decay (e.g. 0.999),
            updated after every optimizer step that trains G; in eval mode G runs
            the average (sample grids, metrics), in training mode its own weights.
            ``None``: no average.
        ema_start: optimizer steps before the average starts (it copies G until then).
            Set ``G.use_ema = False`` to run the trained weights in eval mode too.
        channels_last: keep weights and activations in channels-last memory format.
        compile: ``torch.compile`` the layer stack (the first call compiles); a string
            names the backend.
        amp: ``"bf16"`` runs the layers under autocast (output in float32).
    """

    def __init__(
        self,
        encoding_dims: int = 100,
        out_size: int = 64,
        out_channels: int = 3,
        step_channels: int = 64,
        *,
        attn_resolutions: Optional[Iterable[int]] = None,
        attn_layout: str = "official",
        attn_fused: bool = True,
        batchnorm: bool = True,
        nonlinearity: Optional[nn.Module] = None,
        last_nonlinearity: Optional[nn.Module] = None,
        num_classes: int = 0,
        label_type: Optional[str] = None,
        ema_decay: Optional[float] = None,
        ema_start: int = 0,
        channels_last: bool = False,
        compile: Union[bool, str] = False,
        amp: Optional[str] = None,
    ) -> None:
        check_positive_int("encoding_dims", encoding_dims)
        label_type = _check_classes("SAGANGenerator", num_classes, label_type, "generated")
        super().__init__(encoding_dims, label_type)
        self.num_classes = num_classes
        self.out_size = check_image_size("out_size", out_size)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.step_channels = check_positive_int("step_channels", step_channels)
        check_choice("attn_layout", attn_layout, ATTENTION_LAYOUTS)
        if num_classes and not batchnorm:
            raise ValueError("SAGANGenerator: a class-conditional G conditions through its "
                             "BatchNorm layers; keep batchnorm=True with num_classes")
        widths = _feature_widths(out_size, step_channels)
        resolutions = sorted(widths)  # 4, ..., out_size/2
        if attn_resolutions is None:
            attn_resolutions = default_attn_resolutions(out_size)
        self.attn_resolutions = _check_attention(
            "SAGANGenerator", attn_resolutions, widths, step_channels
        )
        act = nn.ReLU() if nonlinearity is None else nonlinearity
        last_act = nn.Tanh() if last_nonlinearity is None else last_nonlinearity

        layers: List[nn.Module] = []
        in_ch = encoding_dims
        for r in resolutions:
            first = r == resolutions[0]
            layers.append(
                nn.ConvTranspose2d(
                    in_ch,
                    widths[r],
                    4,
                    stride=1 if first else 2,
                    padding=0 if first else 1,
                    bias=not batchnorm,
                )
            )
            if batchnorm:
                layers.append(ConditionalBatchNorm2d(widths[r], num_classes) if num_classes
                              else nn.BatchNorm2d(widths[r]))
            layers.append(act)
            if r in self.attn_resolutions:
                layers.append(SelfAttention2d(widths[r], layout=attn_layout, fused=attn_fused))
            in_ch = widths[r]
        layers += [nn.ConvTranspose2d(in_ch, out_channels, 4, 2, 1), last_act]
        self.model = ConditionalSequential(*layers)
        apply_spectral_norm(self.model)
        self.ema = None if ema_decay is None else WeightEMA(self.model, ema_decay, ema_start)
        #: In eval mode, run the moving average (True) or the trained weights (False).
        self.use_ema = True
        if self.ema is not None:
            follow_optimizer_steps(self)
        self._weight_initializer()
        self._set_speed_options(channels_last, compile, amp)

    def __setstate__(self, state) -> None:
        # Copies (copy.deepcopy, pickle) follow their own optimizer steps too.
        super().__setstate__(state)
        if self.__dict__.get("_modules", {}).get("ema") is not None:
            follow_optimizer_steps(self)

    def _weight_initializer(self) -> None:
        """Re-initialize all weights (see :func:`_init_weights`); the average restarts
        from them."""
        _init_weights(self.model)
        if self.ema is not None:
            _unwrap(self.ema).copy_(_unwrap(self.model))
            _unwrap(self.ema).steps.zero_()

    def _ema_after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.ema is not None and optimizer_trains(optimizer, next(self.model.parameters())):
            _unwrap(self.ema).update(_unwrap(self.model))

    @property
    def layers(self) -> nn.Module:
        """The layer stack that runs now: the moving average in eval mode (when G has
        one and ``use_ema`` is on), the trained weights otherwise."""
        if self.ema is not None and self.use_ema and not self.training:
            return _unwrap(self.ema).model
        return self.model

    def _noise_as_map(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 4) or z.size(1) != self.encoding_dims:
            raise ValueError(
                f"SAGANGenerator(encoding_dims={self.encoding_dims}) expects noise of "
                f"shape (B, {self.encoding_dims}), got {tuple(z.shape)}"
            )
        return z.reshape(z.size(0), self.encoding_dims, 1, 1)  # (B, Z, 1, 1)

    def _labels(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return _check_labels("SAGANGenerator", self.num_classes, labels, z.size(0))

    def forward(
        self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, feature_matching: bool = False
    ) -> torch.Tensor:
        """Map noise (B, encoding_dims) to images (B, out_channels, out_size, out_size);
        a conditional G also takes ``labels`` (B,), the class of each image.

        ``feature_matching`` is accepted for torchgan compatibility and ignored.
        """
        return self._run(self.layers, self._noise_as_map(z), *self._labels(z, labels))

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
        return _run_recording_attention(_unwrap(self.layers), self._noise_as_map(z), *labels)


class SAGANDiscriminator(_SpeedOptions, Discriminator):
    r"""SAGAN discriminator: spectrally normalized convolutions, self-attention, and a
    raw logit per image.

    Args:
        in_size: height and width of the images, a power of 2 from 16 to 256.
        in_channels: channels of the images.
        step_channels: width unit d; the first block has d channels at
            ``in_size / 2`` and every downsampling doubles it.
        attn_resolutions: feature-map resolutions followed by self-attention, each
            one of 4, 8, ..., ``in_size // 2``. Default: :func:`default_attn_resolutions`.
        attn_layout: ``"official"`` (the paper's code) or ``"torchgan"``.
        attn_fused: attention through the fused kernel. Set it to ``False`` when
            training with a gradient penalty (WGAN-GP, DRAGAN), which needs second
            derivatives that the fused kernels do not have.
        batchnorm: BatchNorm after the inner convolutions (off in SAGAN, whose D
            relies on spectral norm alone).
        nonlinearity: inner activation; ``LeakyReLU(0.1)`` if ``None``.
        last_nonlinearity: applied to the logit; none if ``None``. Losses such as
            the hinge need the raw logit.
        num_classes: 0 for an unconditional D; otherwise the number of classes, and D
            is a projection discriminator: ``D(x, y) = head(h) + <embed(y), sum h>``
            with ``h`` the last (4x4) features summed over positions and a spectrally
            normalized class embedding. Call ``D(x, labels)``.
        label_type: torchgan's label type; a conditional D needs the true class of
            every real image, so only ``"required"`` (the default) is accepted.
        diffaugment: a DiffAugment policy such as ``"color,translation,cutout"``:
            every image D sees in training mode (real and fake, in D's step and G's)
            is augmented first (:mod:`torchgan_sagan.augment`). ``None``: no
            augmentation.
        channels_last, compile, amp: speed options, as in :class:`SAGANGenerator`.
    """

    def __init__(
        self,
        in_size: int = 64,
        in_channels: int = 3,
        step_channels: int = 64,
        *,
        attn_resolutions: Optional[Iterable[int]] = None,
        attn_layout: str = "official",
        attn_fused: bool = True,
        batchnorm: bool = False,
        nonlinearity: Optional[nn.Module] = None,
        last_nonlinearity: Optional[nn.Module] = None,
        num_classes: int = 0,
        label_type: Optional[str] = None,
        diffaugment: Optional[str] = None,
        channels_last: bool = False,
        compile: Union[bool, str] = False,
        amp: Optional[str] = None,
    ) -> None:
        check_positive_int("in_channels", in_channels)
        label_type = _check_classes("SAGANDiscriminator", num_classes, label_type, "required")
        if label_type == "generated":
            raise ValueError(
                "SAGANDiscriminator: label_type='generated' would make torchgan's losses score "
                "real images against random labels; a projection discriminator needs the "
                "real labels (label_type='required'). Use label_type='generated' on the "
                "generator to draw labels for the fakes"
            )
        super().__init__(in_channels, label_type)
        self.num_classes = num_classes
        self.augment = DiffAugment(diffaugment)
        self.in_size = check_image_size("in_size", in_size)
        self.step_channels = check_positive_int("step_channels", step_channels)
        check_choice("attn_layout", attn_layout, ATTENTION_LAYOUTS)
        widths = _feature_widths(in_size, step_channels)
        resolutions = sorted(widths, reverse=True)  # in_size/2, ..., 4
        if attn_resolutions is None:
            attn_resolutions = default_attn_resolutions(in_size)
        self.attn_resolutions = _check_attention(
            "SAGANDiscriminator", attn_resolutions, widths, step_channels
        )
        act = nn.LeakyReLU(0.1) if nonlinearity is None else nonlinearity

        layers: List[nn.Module] = []
        in_ch = in_channels
        for r in resolutions:
            first = r == resolutions[0]
            layers.append(nn.Conv2d(in_ch, widths[r], 4, 2, 1, bias=first or not batchnorm))
            if batchnorm and not first:
                layers.append(nn.BatchNorm2d(widths[r]))
            layers.append(act)
            if r in self.attn_resolutions:
                layers.append(SelfAttention2d(widths[r], layout=attn_layout, fused=attn_fused))
            in_ch = widths[r]
        self.model = nn.Sequential(*layers)
        self.disc = nn.Sequential(nn.Conv2d(in_ch, 1, 4, 1, 0))  # (B, 8d, 4, 4) -> (B, 1, 1, 1)
        self.last_nonlinearity = nn.Identity() if last_nonlinearity is None else last_nonlinearity
        if num_classes:
            self.embed = nn.Embedding(num_classes, in_ch)  # projection: (num_classes, 8d)
        apply_spectral_norm(self)
        self._weight_initializer()
        self._set_speed_options(channels_last, compile, amp)

    def _weight_initializer(self) -> None:
        """Re-initialize all weights (see :func:`_init_weights`)."""
        _init_weights(self)

    def _check_images(self, x: torch.Tensor) -> None:
        expected = (self.input_dims, self.in_size, self.in_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"SAGANDiscriminator expects images of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}; check in_size and in_channels"
            )

    def _logits(self, h: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        logit = self._run(self.disc, h).view(h.size(0))  # (B,)
        if self.num_classes:
            features = h.float().sum(dim=(2, 3))  # (B, 8d)
            logit = logit + (self.embed(labels) * features).sum(dim=1)  # (B,)
        return self.last_nonlinearity(logit)

    def _checked(self, x: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        self._check_images(x)
        _check_labels("SAGANDiscriminator", self.num_classes, labels, x.size(0))

    def forward(
        self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, feature_matching: bool = False
    ) -> torch.Tensor:
        """Score images: logits of shape (B,), or the 4x4 features if ``feature_matching``.
        A conditional D also takes ``labels`` (B,), the class each image should show."""
        self._checked(x, labels)
        h = self._run(self.model, self.augment(x))  # (B, 8d, 4, 4) for in_size 64
        if feature_matching:
            return h
        return self._logits(h, labels)  # (B,)

    def attention_maps(
        self, x: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Score images and return the logits with every attention block's map."""
        self._checked(x, labels)
        h, maps = _run_recording_attention(_unwrap(self.model), x)
        return self._logits(h, labels), maps
