r"""The SAGAN discriminator as a torchgan model.

It follows the DCGAN layout of ``torchgan.models.DCGANDiscriminator`` (4x4 stride-2
convolutions, widths doubling towards the 4x4 end) and takes the same argument
names, with what SAGAN adds: every convolution spectrally normalized,
self-attention after the blocks at ``attn_resolutions``, and a raw logit per image
(no sigmoid, no tanh), as the hinge loss needs. For a 64x64 image and
``step_channels = d``::

    64x64xC -> 32x32xd -> 16x16x2d -> 8x8x4d -> 4x4x8d -> logit
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torchgan.models import Discriminator

from ..checks import check_classes, check_image_size, check_labels, check_positive_int
from ..augment import DiffAugment
from ..layers import apply_spectral_norm
from .options import AugmentOptions, takes_options
from .common import NetOptionsMixin, init_weights, run_recording_attention, unwrap

__all__ = ["SAGANDiscriminator"]


@takes_options("D")
class SAGANDiscriminator(NetOptionsMixin, Discriminator):
    r"""SAGAN discriminator: spectrally normalized convolutions, self-attention, and a
    raw logit per image.

    Args:
        in_size: height and width of the images: a power of 2 from 16 to 256 or another of
            :data:`~torchgan_sagan.checks.IMAGE_SIZES` (28, 48, 96, ...); D halves down to
            the size's base (4; 7 for 28, 6 for 48).
        in_channels: channels of the images.
        step_channels: width unit d; the first block has d channels at
            ``in_size / 2`` and every downsampling doubles it.
        batchnorm: BatchNorm after the inner convolutions (off in SAGAN, whose D
            relies on spectral norm alone).
        nonlinearity: inner activation; ``LeakyReLU(0.1)`` if ``None``.
        last_nonlinearity: applied to the logit; none if ``None``. Losses such as
            the hinge need the raw logit.
        num_classes: 0 for an unconditional D; otherwise the number of classes, and D
            is a projection discriminator (Miyato & Koyama 2018):
            ``D(x, y) = head(h) + <embed(y), sum h>`` with ``h`` the last (4x4)
            features summed over positions and a spectrally normalized class
            embedding. Call ``D(x, labels)``.
        label_type: torchgan's label type; a conditional D needs the true class of
            every real image, so only ``"required"`` (the default) is accepted.

    Train with ``attn_fused=False`` under a gradient penalty (WGAN-GP, DRAGAN): it
    needs second derivatives, which the fused attention kernels do not have.
    """

    def __init__(self, in_size: int = 64, in_channels: int = 3, step_channels: int = 64, *,
                 batchnorm: bool = False, nonlinearity: Optional[nn.Module] = None,
                 last_nonlinearity: Optional[nn.Module] = None, num_classes: int = 0,
                 label_type: Optional[str] = None, **options) -> None:
        check_positive_int("in_channels", in_channels)
        label_type = check_classes("SAGANDiscriminator", num_classes, label_type, "required")
        if label_type == "generated":
            raise ValueError(
                "SAGANDiscriminator: label_type='generated' would make torchgan's losses score "
                "real images against random labels; a projection discriminator needs the "
                "real labels (label_type='required'). Use label_type='generated' on the "
                "generator to draw labels for the fakes"
            )
        super().__init__(in_channels, label_type)
        self.in_size = check_image_size("in_size", in_size)
        widths, groups = self._setup(in_size, step_channels, num_classes, options)
        self.augment = DiffAugment(groups[AugmentOptions].diffaugment)
        self.model = nn.Sequential(*self._layers(widths, nonlinearity, batchnorm))
        self.base = min(widths)  # the last features' resolution: 4 (7 for 28, 6 for 48)
        features = widths[self.base]  # channels of the last features
        self.disc = self._head(features)
        self.last_nonlinearity = nn.Identity() if last_nonlinearity is None else last_nonlinearity
        if num_classes:
            self.embed = nn.Embedding(num_classes, features)  # projection: (num_classes, 8d)
        apply_spectral_norm(self)
        self._finish()

    def _layers(self, widths: Dict[int, int], nonlinearity: Optional[nn.Module], batchnorm: bool
                ) -> List[nn.Module]:
        """The layer stack: a stride-2 convolution per resolution (in_size/2, ..., base), each
        followed by BatchNorm if asked (not the first), the activation and attention."""
        act = nn.LeakyReLU(0.1) if nonlinearity is None else nonlinearity
        resolutions = sorted(widths, reverse=True)  # in_size/2, ..., base
        layers: List[nn.Module] = []
        in_ch = self.input_dims
        for r in resolutions:
            first = r == resolutions[0]
            layers.append(nn.Conv2d(in_ch, widths[r], 4, 2, 1, bias=first or not batchnorm))
            if batchnorm and not first:
                layers.append(nn.BatchNorm2d(widths[r]))
            layers.append(act)
            if r in self.attn_resolutions:
                layers.append(self._attention_layer(widths[r]))
            in_ch = widths[r]
        return layers

    def _head(self, features: int) -> nn.Module:
        """The logit from the last features: a b x b convolution, (B, 8d, b, b) -> (B, 1, 1, 1)."""
        return nn.Sequential(nn.Conv2d(features, 1, self.base, 1, 0))

    def _weight_initializer(self) -> None:
        """Re-initialize all weights (see :func:`~torchgan_sagan.models.common.init_weights`)."""
        init_weights(self)

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
            logit = self._projection(logit, h.float().sum(dim=(2, 3)), labels)  # features (B, 8d)
        return self.last_nonlinearity(logit)

    def _projection(self, logit: torch.Tensor, features: torch.Tensor, labels: Optional[torch.Tensor]
                    ) -> torch.Tensor:
        """The projection discriminator's class term (Miyato & Koyama, 2018): ``logit``
        (B,) plus the inner product of the class embedding with ``features`` (B, F);
        ``logit`` unchanged when unconditional."""
        if not self.num_classes:
            return logit
        return logit + (self.embed(labels) * features).sum(dim=1)  # (B,)

    def _checked(self, x: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        self._check_images(x)
        check_labels("SAGANDiscriminator", self.num_classes, labels, x.size(0))

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
        h, maps = run_recording_attention(unwrap(self.model), x)
        return self._logits(h, labels), maps
