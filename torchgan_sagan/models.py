r"""SAGAN generator and discriminator as torchgan models.

Both nets follow the DCGAN layout of ``torchgan.models.DCGANGenerator`` /
``DCGANDiscriminator`` (4x4 stride-2 convolutions, widths doubling towards the
4x4 end) and take the same argument names, with what SAGAN adds:

- every convolution spectrally normalized, in G as well as in D;
- self-attention (:class:`~torchgan_sagan.layers.SelfAttention2d`) after the blocks
  whose feature maps have the resolutions in ``attn_resolutions``;
- D ends in a raw logit per image (no sigmoid, no tanh), as the hinge loss needs;
- G uses BatchNorm and ends in ``tanh``.

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
from .layers import (
    ATTENTION_LAYOUTS,
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
    layers: Sequence[nn.Module], x: torch.Tensor
) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
    """Run ``layers`` in order, collecting each attention block's map by resolution."""
    maps: Dict[int, torch.Tensor] = {}
    for layer in layers:
        if isinstance(layer, SelfAttention2d):
            x, maps[x.size(-1)] = layer(x, return_attn=True)
        else:
            x = layer(x)
    return x, maps


def _init_weights(net: nn.Module) -> None:
    """Xavier-uniform weights, zero biases, BatchNorm at identity; then re-estimate SN.

    Spectrally normalized layers are initialized through their unnormalized
    ``original`` tensor (writing to ``module.weight`` would only change a temporary).
    The attention gain ``gamma`` keeps its initial 0.
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                weight = (
                    m.parametrizations.weight.original
                    if parametrize.is_parametrized(m, "weight")
                    else m.weight
                )
                nn.init.xavier_uniform_(weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
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

    def _run(self, layers: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp is None:
            return layers(x)
        with torch.autocast(x.device.type, dtype=AMP_DTYPES[self.amp]):
            return layers(x).float()


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
        channels_last: bool = False,
        compile: Union[bool, str] = False,
        amp: Optional[str] = None,
    ) -> None:
        check_positive_int("encoding_dims", encoding_dims)
        super().__init__(encoding_dims, "none")
        self.out_size = check_image_size("out_size", out_size)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.step_channels = check_positive_int("step_channels", step_channels)
        check_choice("attn_layout", attn_layout, ATTENTION_LAYOUTS)
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
                layers.append(nn.BatchNorm2d(widths[r]))
            layers.append(act)
            if r in self.attn_resolutions:
                layers.append(SelfAttention2d(widths[r], layout=attn_layout, fused=attn_fused))
            in_ch = widths[r]
        layers += [nn.ConvTranspose2d(in_ch, out_channels, 4, 2, 1), last_act]
        self.model = nn.Sequential(*layers)
        apply_spectral_norm(self)
        self._weight_initializer()
        self._set_speed_options(channels_last, compile, amp)

    def _weight_initializer(self) -> None:
        """Re-initialize all weights (see :func:`_init_weights`)."""
        _init_weights(self)

    def _noise_as_map(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 4) or z.size(1) != self.encoding_dims:
            raise ValueError(
                f"SAGANGenerator(encoding_dims={self.encoding_dims}) expects noise of "
                f"shape (B, {self.encoding_dims}), got {tuple(z.shape)}"
            )
        return z.reshape(z.size(0), self.encoding_dims, 1, 1)  # (B, Z, 1, 1)

    def forward(self, z: torch.Tensor, feature_matching: bool = False) -> torch.Tensor:
        """Map noise (B, encoding_dims) to images (B, out_channels, out_size, out_size).

        ``feature_matching`` is accepted for torchgan compatibility and ignored.
        """
        return self._run(self.model, self._noise_as_map(z))

    def attention_maps(self, z: torch.Tensor) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Generate images and return them with every attention block's map.

        Returns ``(images, {resolution: attn})`` with ``attn`` of shape
        (B, N_queries, N_keys) as described in :class:`SelfAttention2d`.
        """
        return _run_recording_attention(self.model, self._noise_as_map(z))


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
        channels_last: bool = False,
        compile: Union[bool, str] = False,
        amp: Optional[str] = None,
    ) -> None:
        check_positive_int("in_channels", in_channels)
        super().__init__(in_channels, "none")
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
        head: List[nn.Module] = [nn.Conv2d(in_ch, 1, 4, 1, 0)]
        if last_nonlinearity is not None:
            head.append(last_nonlinearity)
        self.disc = nn.Sequential(*head)
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

    def forward(self, x: torch.Tensor, feature_matching: bool = False) -> torch.Tensor:
        """Score images: logits of shape (B,), or the 4x4 features if ``feature_matching``."""
        self._check_images(x)
        h = self._run(self.model, x)  # (B, 8d, 4, 4) for in_size 64
        if feature_matching:
            return h
        return self._run(self.disc, h).view(x.size(0))  # (B,)

    def attention_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Score images and return the logits with every attention block's map."""
        self._check_images(x)
        h, maps = _run_recording_attention(self.model, x)
        return self.disc(h).view(x.size(0)), maps
