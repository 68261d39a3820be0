"""Named SAGAN recipes that produce everything torchgan's ``Trainer`` needs.

A recipe is a :class:`SAGANConfig` (typed, frozen data). Recipes are registered by
decorating a function that returns one; the function's name is the recipe's name::

    from torchgan.trainer import Trainer
    from torchgan_sagan import get_config, list_configs

    cfg = get_config("sagan_celeba_64", step_channels=32)   # overrides win
    trainer = Trainer(cfg.network_params(), cfg.losses(), device=device, **cfg.trainer_kwargs())
    trainer(dataloader)

Losses are chosen by name from :data:`LOSSES`: the hinge pair of this package or one of
torchgan's built-in losses for unconditional GANs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch.nn as nn
from torch.optim import Adam
from torchgan import losses as tg

from ._validation import check_choice, check_image_size, check_positive_int
from .augment import parse_policy
from .ema import WeightEMA
from .losses import HingeDiscriminatorLoss, HingeGeneratorLoss
from .models import (
    SAGANDiscriminator,
    SAGANGenerator,
    _check_amp,
    _check_attention,
    _check_classes,
    _feature_widths,
)

__all__ = [
    "LOSSES",
    "GRADIENT_PENALTY_LOSSES",
    "SAGANConfig",
    "register_config",
    "get_config",
    "list_configs",
]

#: Loss recipes by name: each builds a fresh list of torchgan losses.
LOSSES: Dict[str, Callable[[], list]] = {
    # SAGAN's loss (this package).
    "hinge": lambda: [HingeGeneratorLoss(), HingeDiscriminatorLoss()],
    # Goodfellow et al. 2014, with the non-saturating generator loss.
    "minimax": lambda: [tg.MinimaxGeneratorLoss(), tg.MinimaxDiscriminatorLoss()],
    # Mao et al. 2017 (LSGAN).
    "least_squares": lambda: [tg.LeastSquaresGeneratorLoss(), tg.LeastSquaresDiscriminatorLoss()],
    # Arjovsky et al. 2017: weight clipping at 0.01, as in the paper and torchgan's tutorial.
    "wasserstein": lambda: [
        tg.WassersteinGeneratorLoss(),
        tg.WassersteinDiscriminatorLoss(clip=(-0.01, 0.01)),
    ],
    # Gulrajani et al. 2017 (WGAN-GP), lambda = 10.
    "wasserstein_gp": lambda: [
        tg.WassersteinGeneratorLoss(),
        tg.WassersteinDiscriminatorLoss(),
        tg.WassersteinGradientPenalty(),
    ],
    # Kodali et al. 2017: minimax plus a gradient penalty around the real data.
    "dragan": lambda: [
        tg.MinimaxGeneratorLoss(),
        tg.MinimaxDiscriminatorLoss(),
        tg.DraganGradientPenalty(),
    ],
    # Salimans et al. 2016: G matches D's features of real data; D plays minimax.
    "feature_matching": lambda: [
        tg.FeatureMatchingGeneratorLoss(),
        tg.MinimaxDiscriminatorLoss(),
    ],
}

#: Losses that differentiate D's input gradient, so D's attention cannot be fused.
GRADIENT_PENALTY_LOSSES = frozenset({"wasserstein_gp", "dragan"})


@dataclass(frozen=True)
class SAGANConfig:
    """A SAGAN recipe: nets, loss, optimizers and training length.

    Attributes mirror the constructor arguments of :class:`SAGANGenerator` and
    :class:`SAGANDiscriminator` (``g_``/``d_`` prefixes where the two differ); see
    :meth:`network_params` for how they map onto torchgan's schema.
    """

    image_size: int = 64
    image_channels: int = 3
    encoding_dims: int = 128
    step_channels: int = 64
    g_attn_resolutions: Tuple[int, ...] = (32,)
    d_attn_resolutions: Tuple[int, ...] = (32,)
    attn_layout: str = "official"
    g_batchnorm: bool = True
    d_batchnorm: bool = False
    #: ``None`` for ReLU, else the negative slope of a LeakyReLU.
    g_leaky_slope: Optional[float] = None
    d_leaky_slope: Optional[float] = 0.1
    #: Squash D's output with tanh (only for recipes that reproduce such a net).
    d_tanh: bool = False
    #: Class-conditional SAGAN with this many classes (0: unconditional): conditional
    #: BatchNorm in G, projection in D. ``label_type`` is G's: ``"generated"`` (fakes
    #: of random classes) or ``"required"`` (fakes of the real batch's classes); D's is
    #: always ``"required"``.
    num_classes: int = 0
    label_type: str = "generated"
    #: Moving average of G's weights (its decay; ``None``: off), used for samples,
    #: metrics and saved in checkpoints; ``ema_start``: G steps before it averages.
    ema_decay: Optional[float] = None
    ema_start: int = 0
    #: DiffAugment policy for everything D sees in training, e.g.
    #: ``"color,translation,cutout"``; ``None``: off.
    diffaugment: Optional[str] = None
    loss: str = "hinge"
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    betas: Tuple[float, float] = (0.0, 0.9)
    ncritic: int = 1
    batch_size: int = 64
    epochs: int = 10
    sample_size: int = 64
    #: Speed options of both nets (see :class:`SAGANGenerator`): fused attention (on;
    #: D's is unfused anyway under a gradient-penalty loss, which needs second
    #: derivatives), channels-last memory format, ``torch.compile`` (True or a backend
    #: name), autocast (``"bf16"``).
    attn_fused: bool = True
    channels_last: bool = False
    compile: Union[bool, str] = False
    amp: Optional[str] = None
    #: Where the recipe comes from; filled from the registered function's docstring.
    source: str = ""

    def __post_init__(self) -> None:
        check_image_size("image_size", self.image_size)
        for name in ("image_channels", "encoding_dims", "step_channels", "batch_size", "epochs", "sample_size"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.ncritic, bool) or not isinstance(self.ncritic, int) or self.ncritic == 0:
            raise ValueError(
                f"ncritic must be a non-zero integer (D steps per G step, or G steps per "
                f"D step if negative), got {self.ncritic!r}"
            )
        check_choice("loss", self.loss, LOSSES)
        _check_classes("SAGANConfig", self.num_classes, None, "generated")
        if self.num_classes:
            check_choice("label_type", self.label_type, ("generated", "required"))
        if self.ema_decay is not None:
            WeightEMA._check(self.ema_decay, self.ema_start)
        parse_policy(self.diffaugment)
        for name in ("g_lr", "d_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        # torch's Adam rejects mixed int/float betas such as (0, 0.9).
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        _check_amp(self.amp)
        widths = _feature_widths(self.image_size, self.step_channels)
        for net, key in (("generator", "g_attn_resolutions"), ("discriminator", "d_attn_resolutions")):
            resolutions = _check_attention(net, getattr(self, key), widths, self.step_channels, key)
            object.__setattr__(self, key, resolutions)

    @staticmethod
    def _activation(slope: Optional[float]) -> nn.Module:
        return nn.ReLU() if slope is None else nn.LeakyReLU(slope)

    def _speed_args(self) -> dict:
        return {"channels_last": self.channels_last, "compile": self.compile, "amp": self.amp}

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def _class_args(self, label_type: str) -> dict:
        if not self.conditional:
            return {}
        return {"num_classes": self.num_classes, "label_type": label_type}

    def generator_args(self) -> dict:
        """Keyword arguments of :class:`SAGANGenerator`."""
        return {
            "encoding_dims": self.encoding_dims,
            "out_size": self.image_size,
            "out_channels": self.image_channels,
            "step_channels": self.step_channels,
            "attn_resolutions": self.g_attn_resolutions,
            "attn_layout": self.attn_layout,
            "attn_fused": self.attn_fused,
            "batchnorm": self.g_batchnorm,
            "nonlinearity": self._activation(self.g_leaky_slope),
            **self._class_args(self.label_type),
            **({"ema_decay": self.ema_decay, "ema_start": self.ema_start} if self.ema_decay is not None else {}),
            **self._speed_args(),
        }

    def discriminator_args(self) -> dict:
        """Keyword arguments of :class:`SAGANDiscriminator`.

        With a gradient-penalty loss, D's attention runs unfused (see
        :class:`~torchgan_sagan.layers.SelfAttention2d`).
        """
        return {
            "in_size": self.image_size,
            "in_channels": self.image_channels,
            "step_channels": self.step_channels,
            "attn_resolutions": self.d_attn_resolutions,
            "attn_layout": self.attn_layout,
            "attn_fused": self.attn_fused and self.loss not in GRADIENT_PENALTY_LOSSES,
            "batchnorm": self.d_batchnorm,
            "nonlinearity": self._activation(self.d_leaky_slope),
            "last_nonlinearity": nn.Tanh() if self.d_tanh else None,
            **self._class_args("required"),
            **({"diffaugment": self.diffaugment} if self.diffaugment else {}),
            **self._speed_args(),
        }

    def network_params(self) -> dict:
        """The ``models`` dict of ``torchgan.trainer.Trainer``: nets and Adam (TTUR)."""
        return {
            "generator": {
                "name": SAGANGenerator,
                "args": self.generator_args(),
                "optimizer": {"name": Adam, "args": {"lr": self.g_lr, "betas": self.betas}},
            },
            "discriminator": {
                "name": SAGANDiscriminator,
                "args": self.discriminator_args(),
                "optimizer": {"name": Adam, "args": {"lr": self.d_lr, "betas": self.betas}},
            },
        }

    def losses(self) -> list:
        """A fresh list of the torchgan losses named by ``loss``."""
        return LOSSES[self.loss]()

    def trainer_kwargs(self) -> dict:
        """Keyword arguments for ``Trainer`` besides nets, losses and device."""
        return {
            "epochs": self.epochs,
            "ncritic": self.ncritic,
            "sample_size": self.sample_size,
            "nrow": max(1, int(self.sample_size**0.5)),
        }


_REGISTRY: Dict[str, Callable[[], SAGANConfig]] = {}


def register_config(fn: Callable[[], SAGANConfig]) -> Callable[[], SAGANConfig]:
    """Register ``fn`` (returning a :class:`SAGANConfig`) under ``fn.__name__``.

    Its docstring becomes the config's ``source``. A name registered twice is an error.
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"a config named {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_configs(pattern: str = "*") -> List[str]:
    """Registered names matching the shell-style ``pattern`` (``*``, ``?``, ``[...]``), sorted."""
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def get_config(name: str, **overrides) -> SAGANConfig:
    """The config registered as ``name``, with ``overrides`` replacing its fields."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown config {name!r}; known configs: {', '.join(list_configs())}")
    fields = {f.name for f in dataclasses.fields(SAGANConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for config {name!r}; "
            f"SAGANConfig fields are: {', '.join(sorted(fields))}"
        )
    cfg = _REGISTRY[name]()
    source = " ".join((_REGISTRY[name].__doc__ or "").split())
    return dataclasses.replace(cfg, **{"source": source, **overrides})


@register_config
def sagan_celeba_64() -> SAGANConfig:
    """CelebA 64x64 with the SAGAN paper's recipe (Zhang et al. 2018, sec. 5): hinge
    loss, spectral norm in G and D, TTUR with Adam lr 1e-4 (G) / 4e-4 (D), betas
    (0, 0.9), one D step per G step, batch 64; attention on the 32x32 feature maps
    (the placement the paper's ablation favours), official attention layout."""
    return SAGANConfig()


@register_config
def sagan_32() -> SAGANConfig:
    """32x32 images, grayscale or RGB (digits, CIFAR-like): the paper's recipe with
    attention on the 16x16 feature maps; set image_channels=1 for grayscale."""
    return SAGANConfig(image_size=32, g_attn_resolutions=(16,), d_attn_resolutions=(16,))


@register_config
def sagan_128() -> SAGANConfig:
    """128x128 images with the paper's recipe; attention on the 64x64 feature maps,
    where the paper found it helped most at this size (feat64 in its Table 1). The
    paper trained with batch 256 on 4 GPUs; 64 fits one."""
    return SAGANConfig(image_size=128, g_attn_resolutions=(64,), d_attn_resolutions=(64,))


@register_config
def sagan_faces_32() -> SAGANConfig:
    """The embedded default of examples/celeba.py: the 100 LFW face crops shipped
    with scikit-image, grayscale, resized to 32x32. The paper's recipe at a width
    (step_channels 32) and batch (20) that train to face-like samples in about 3
    minutes on a 2-core CPU (300 epochs of 10 steps)."""
    return SAGANConfig(
        image_size=32,
        image_channels=1,
        step_channels=32,
        g_attn_resolutions=(16,),
        d_attn_resolutions=(16,),
        batch_size=20,
        epochs=300,
        sample_size=64,
    )


@register_config
def sagan_tutorial_64() -> SAGANConfig:
    """torchgan's SAGAN tutorial network (tutorials/Tutorial 4. Self Attention GAN):
    64x64 RGB, step_channels 32, attention at 16 and 32 in G and at 8 and 4 in D,
    BatchNorm and LeakyReLU(0.2) in both nets, tanh on D's output, Wasserstein loss with
    clipping at 0.01, Adam lr 1e-4 / 4e-4 with betas (0, 0.999), encoding_dims 100. The
    attention is this package's in the paper's layout (softmax over keys, value at C/2,
    keys and values pooled 2x2, fused), which trains 2.6x as fast as the tutorial in
    torchgan's Trainer on a CPU; attn_layout="torchgan" keeps torchgan's projections
    (C/8 queries and keys, C values, no pooling), 1.6x. Differences in detail: the
    tutorial's last blocks of G and D have no activation and its first D block has
    BatchNorm. With the tutorial's loss it trains worse than the paper's recipe (hinge,
    sagan_32 and the others); see the README's Performance section."""
    return SAGANConfig(
        image_size=64,
        image_channels=3,
        encoding_dims=100,
        step_channels=32,
        g_attn_resolutions=(16, 32),
        d_attn_resolutions=(4, 8),
        attn_layout="official",
        d_batchnorm=True,
        g_leaky_slope=0.2,
        d_leaky_slope=0.2,
        d_tanh=True,
        loss="wasserstein",
        betas=(0.0, 0.999),
        epochs=20,
    )


@register_config
def sagan_cond_imagenet_128() -> SAGANConfig:
    """The paper's headline setting: class-conditional SAGAN on ImageNet 128x128 (1000
    classes), with conditional BatchNorm in G and a projection discriminator, hinge
    loss, spectral norm in G and D, TTUR (Adam lr 1e-4 / 4e-4, betas (0, 0.9)), one D
    step per G step, batch 256 (the paper's, over 4 GPUs). Fakes get random classes
    (label_type "generated"). Attention on the 64x64 feature maps as in sagan_128.
    The paper's nets are residual; these keep this package's DCGAN-style blocks."""
    return dataclasses.replace(sagan_128(), num_classes=1000, label_type="generated", batch_size=256)


@register_config
def sagan_cond_digits_32() -> SAGANConfig:
    """Class-conditional SAGAN on the handwritten digits that ship with scikit-learn
    (torchgan_sagan.data.embedded_digits): 10 classes, grayscale 32x32, the paper's
    recipe at step_channels 16, batch 64, except one learning rate: G's is 4e-4 like
    D's. With the paper's 1e-4 for G, samples ignored their class for the first 1800
    iterations here (class accuracy 0.10 at 1200, 0.19 at 2400); with 4e-4 it reached
    0.90 at 1500. 2000 iterations (72 epochs of the 1797 digits); G draws random
    classes for its fakes."""
    return dataclasses.replace(sagan_32(), image_channels=1, step_channels=16, num_classes=10,
                               label_type="generated", g_lr=4e-4, epochs=72, sample_size=100)
