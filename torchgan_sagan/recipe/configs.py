"""A SAGAN recipe as typed data, and everything torchgan's ``Trainer`` needs from it.

:class:`SAGANConfig` is a frozen dataclass. Its fields are the recipe's own (sizes,
loss, optimizer, training length) plus one field per net option, added from the
option groups of :mod:`torchgan_sagan.models.options`; :meth:`SAGANConfig.network_params`
maps them onto torchgan's ``models`` schema. Named recipes live in
:mod:`torchgan_sagan.recipe.presets`, the registry in :mod:`torchgan_sagan.recipe.registry`::

    from torchgan_sagan import get_config, make_trainer

    cfg = get_config("sagan_celeba_64", step_channels=32)   # overrides win
    trainer = make_trainer(cfg, device=device)              # or Trainer(cfg.network_params(), ...)
    trainer(dataloader)

Losses are chosen by name from :data:`LOSSES`: the hinge and least-squares pairs of
this package (:mod:`torchgan_sagan.losses`) or one of torchgan's built-in losses for
unconditional GANs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch.nn as nn
from torch.optim import Adam
from torchgan import losses as tg

from ..checks import (check_attention, check_betas, check_choice, check_classes, check_compile_with_loss,
                      check_image_size, check_ncritic, check_positive_float, check_positive_int, check_resolutions,
                      parse_interval)
from ..losses import (
    HingeDiscriminatorLoss,
    HingeGeneratorLoss,
    LeastSquaresDiscriminatorLoss,
    LeastSquaresGeneratorLoss,
    WassersteinDiscriminatorLoss,
    WassersteinGeneratorLoss,
)
from ..models import BACKBONES, default_attn_resolutions
from ..layers.attention import fused_mode
from ..models.options import OPTION_GROUPS, net_options, option, option_fields

__all__ = ["LOSSES", "GRADIENT_PENALTY_LOSSES", "DIVERGENCE_ACTIONS", "RESUME_MAY_CHANGE", "SAGANConfig"]

#: Loss recipes by name: each builds a fresh list of torchgan losses.
LOSSES: Dict[str, Callable[[], list]] = {
    # SAGAN's loss (this package).
    "hinge": lambda: [HingeGeneratorLoss(), HingeDiscriminatorLoss()],
    # Goodfellow et al. 2014, with the non-saturating generator loss.
    "minimax": lambda: [tg.MinimaxGeneratorLoss(), tg.MinimaxDiscriminatorLoss()],
    # Mao et al. 2017 (LSGAN): torchgan's losses with this package's training steps
    # (no host sync per step), the presets' default.
    "least_squares": lambda: [LeastSquaresGeneratorLoss(), LeastSquaresDiscriminatorLoss()],
    # Arjovsky et al. 2017: weight clipping at 0.01, as in the paper and torchgan's tutorial;
    # torchgan's losses with this package's training steps.
    "wasserstein": lambda: [
        WassersteinGeneratorLoss(),
        WassersteinDiscriminatorLoss(clip=(-0.01, 0.01)),
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

#: What :meth:`SAGANConfig.to_dict` writes: a tag and the version of the layout and of
#: the nets it builds. 2: transposed convolutions are spectrally normalized over their
#: input channels (their power-iteration vectors changed shape).
CONFIG_FORMAT = "torchgan_sagan.SAGANConfig"
CONFIG_VERSION = 2

#: What a run does when a loss or weight turns non-finite (``on_divergence``).
DIVERGENCE_ACTIONS = ("stop", "rollback")

#: Fields a resumed run may change: how long and how it runs, not what it trains.
#: Learning rates given on resume are applied to the loaded optimizers.
RESUME_MAY_CHANGE = frozenset({
    "epochs", "g_lr", "d_lr", "on_divergence", "max_rollbacks", "checkpoint_every", "keep_every",
    "retain_checkpoints", "sample_size", "source", "compile", "channels_last", "attn_fused", "cuda_graphs",
})

#: Losses that differentiate D's input gradient, so D's attention cannot be fused.
GRADIENT_PENALTY_LOSSES = frozenset({"wasserstein_gp", "dragan"})


@dataclass(frozen=True)
@option_fields
class SAGANConfig:
    """A SAGAN recipe: nets, loss, optimizers and training length.

    Its own fields plus one per net option (:mod:`torchgan_sagan.models.options`; per-net
    options as ``g_``/``d_`` pairs, e.g. ``g_attn_resolutions``); ``help`` in each
    field's metadata describes it. :meth:`network_params` maps them onto torchgan's
    schema.
    """

    backbone: str = option("dcgan", "the nets: 'dcgan' (DCGAN-style, torchgan's layout) or 'resnet' (the SAGAN "
                                    "paper's residual nets)", tags={"resnet": "resnet"},
                           cli={"choices": ("dcgan", "resnet")})
    image_size: int = option(64, "height and width of the images: a power of 2 from 16 to 256, or base x 2**k "
                                 "with a base of 5 to 7 (20, 24, 28, 40, 48, 56, 80, 96, ...)")
    image_channels: int = option(3, "channels of the images (1: grayscale, 3: RGB)")
    encoding_dims: int = option(128, "size of the noise vector z")
    step_channels: int = option(64, "network width unit d (d channels at image_size / 2, doubling "
                                    "at every halving)")
    g_batchnorm: bool = option(True, "BatchNorm in G")
    d_batchnorm: bool = option(False, "BatchNorm in D (SAGAN's relies on spectral norm alone)")
    g_leaky_slope: Optional[float] = option(None, "G's activation: None for ReLU, else a LeakyReLU slope")
    d_leaky_slope: Optional[float] = option(0.1, "D's activation: None for ReLU, else a LeakyReLU slope")
    d_tanh: bool = option(False, "squash D's output with tanh (only for recipes that reproduce such a net)")
    num_classes: int = option(0, "class-conditional SAGAN with this many classes (conditional BatchNorm "
                                 "in G, projection D); 0: unconditional")
    label_type: str = option("generated", "G's label type when conditional: 'generated' (fakes of random "
                                          "classes) or 'required' (of the real batch's); D's is 'required'",
                             cli={"choices": ("generated", "required")})
    class_names: Tuple[str, ...] = option((), "the classes' names in index order, when conditional (recorded from "
                                              "the training data: its class subfolders or labels file)")
    loss: str = option("hinge", "the loss pair, by name (LOSSES)", cli={"choices": tuple(LOSSES)})
    g_lr: float = option(1e-4, "G's Adam learning rate")
    d_lr: float = option(4e-4, "D's Adam learning rate")
    betas: Tuple[float, float] = option((0.0, 0.9), "Adam's betas for both nets")
    ncritic: int = option(1, "D steps per G step (G steps per D step if negative)")
    batch_size: int = option(64, "images per batch")
    epochs: int = option(10, "training epochs in all (also a total when resuming)")
    sample_size: int = option(64, "images in each epoch's sample grid")
    on_divergence: str = option("stop", "when a loss or weight turns non-finite: 'stop' (raise DivergenceError; "
                                        "the newest good checkpoint is kept) or 'rollback' (reload it, halve both "
                                        "learning rates, go on)", cli={"choices": DIVERGENCE_ACTIONS})
    max_rollbacks: int = option(3, "rollbacks before a diverging run stops (with on_divergence='rollback')")
    checkpoint_every: Optional[str] = option(None, "mid-epoch checkpoints every N iterations ('500') or every so "
                                                   "long ('20m', '1h'), besides one at every epoch's end")
    retain_checkpoints: int = option(5, "checkpoints kept, the newest ones (a save replaces the oldest)")
    keep_every: Optional[str] = option(None, "besides the rotation, keep a checkpoint every N iterations or every so "
                                             "long ('6h'), under checkpoints/kept/: a sparse series to go back to")
    cuda_graphs: bool = option(False, "on CUDA, run each training iteration as one CUDA-graph replay (this "
                                      "package's losses, one process; not yet run on GPU hardware)")
    source: str = option("", "where the recipe comes from (the registered function's docstring)")

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        check_image_size("image_size", self.image_size)
        for name in ("image_channels", "encoding_dims", "step_channels", "batch_size", "epochs", "sample_size",
                     "max_rollbacks", "retain_checkpoints"):
            check_positive_int(name, getattr(self, name))
        check_ncritic(self.ncritic)
        check_choice("loss", self.loss, LOSSES)
        check_choice("on_divergence", self.on_divergence, DIVERGENCE_ACTIONS)
        for name in ("checkpoint_every", "keep_every"):
            if parse_interval(name, getattr(self, name)) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        check_compile_with_loss(self.compile, self.loss, GRADIENT_PENALTY_LOSSES)
        check_classes("SAGANConfig", self.num_classes, None, "generated")
        if self.num_classes:
            check_choice("label_type", self.label_type, ("generated", "required"))
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for num_classes {self.num_classes}: "
                             f"give one name per class, or none")
        for name in ("g_lr", "d_lr"):
            check_positive_float(name, getattr(self, name))
        object.__setattr__(self, "betas", check_betas(self.betas))
        for cls, key in zip(BACKBONES[self.backbone], ("g_attn_resolutions", "d_attn_resolutions")):
            resolutions = check_resolutions(key, getattr(self, key))
            if resolutions is None:
                resolutions = default_attn_resolutions(self.image_size)
            widths = cls.attention_widths(self.image_size, self.step_channels)
            object.__setattr__(self, key, check_attention(cls.__name__, resolutions, widths, self.step_channels, key))
        object.__setattr__(self, "attn_fused", fused_mode(self.attn_fused))  # True/False of older configs
        for group in OPTION_GROUPS:  # each group validates its own options
            for net in group.NETS:
                group(**net_options(self, net, group=group))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> Dict[str, Any]:
        """The config as JSON-ready data (``format`` and ``version`` tag it)."""
        fields = {f.name: list(v) if isinstance(v, tuple) else v
                  for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "fields": fields}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SAGANConfig":
        """The config that :meth:`to_dict` wrote; fields it lacks take their defaults.
        Data of another format or version, or with fields this version does not know,
        is a ``ValueError`` that says so."""
        if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
            raise ValueError("this is not a torchgan_sagan config (no 'format': "
                             f"{CONFIG_FORMAT!r} entry)")
        if data.get("version") != CONFIG_VERSION:
            raise ValueError(f"this config has version {data.get('version')!r}, and this torchgan_sagan "
                             f"reads version {CONFIG_VERSION}: use the release that wrote it")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data["fields"]) - known)
        if unknown:
            raise ValueError(f"this config has fields this torchgan_sagan does not know: {unknown}; "
                             f"it was written by another release")
        return cls(**data["fields"])

    def replace(self, **changes) -> "SAGANConfig":
        """A copy with ``changes`` (validated like any config). A new ``image_size``
        moves attention that sits at the default place for the old size (the largest
        feature map up to 32x32) to the default place for the new one: ``sagan_32``
        at 28 attends at 14x14."""
        size = changes.get("image_size", self.image_size)
        if size != self.image_size:
            for key in ("g_attn_resolutions", "d_attn_resolutions"):
                if key not in changes and getattr(self, key) == default_attn_resolutions(self.image_size):
                    changes[key] = None
        return dataclasses.replace(self, **changes)

    def resumed_with(self, **given) -> Tuple["SAGANConfig", Dict[str, Tuple[Any, Any]]]:
        """This config (a run's, from its checkpoint) with the values ``given`` for its
        continuation, and what they change, ``{field: (old, new)}``. A change outside
        :data:`RESUME_MAY_CHANGE` (the nets, the loss, ``ncritic``, betas, batch size,
        EMA, DiffAugment, ...) is a ``ValueError`` that lists every such difference."""
        resumed = self.replace(**given)
        changes = {f.name: (getattr(self, f.name), getattr(resumed, f.name)) for f in dataclasses.fields(self)
                   if getattr(self, f.name) != getattr(resumed, f.name)}
        refused = [f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items()
                   if name not in RESUME_MAY_CHANGE]
        if refused:
            raise ValueError(f"a resumed run keeps what it trains, and these differ from its checkpoint: "
                             f"{'; '.join(refused)}. Drop those flags to continue it, or start a new run")
        return resumed, changes

    @staticmethod
    def _activation(slope: Optional[float]) -> nn.Module:
        return nn.ReLU() if slope is None else nn.LeakyReLU(slope)

    def _class_args(self, label_type: str) -> dict:
        if not self.conditional:
            return {}
        return {"num_classes": self.num_classes, "label_type": label_type}

    def generator_args(self) -> dict:
        """Keyword arguments of the generator (options at their default left out)."""
        return {
            "encoding_dims": self.encoding_dims,
            "out_size": self.image_size,
            "out_channels": self.image_channels,
            "step_channels": self.step_channels,
            "batchnorm": self.g_batchnorm,
            "nonlinearity": self._activation(self.g_leaky_slope),
            **self._class_args(self.label_type),
            **net_options(self, "G"),
        }

    def discriminator_args(self) -> dict:
        """Keyword arguments of the discriminator (options at their default left out).

        With a gradient-penalty loss, D's attention runs unfused (see
        :class:`~torchgan_sagan.layers.SelfAttention2d`).
        """
        args = {
            "in_size": self.image_size,
            "in_channels": self.image_channels,
            "step_channels": self.step_channels,
            "batchnorm": self.d_batchnorm,
            "nonlinearity": self._activation(self.d_leaky_slope),
            "last_nonlinearity": nn.Tanh() if self.d_tanh else None,
            **self._class_args("required"),
            **net_options(self, "D"),
        }
        if self.loss in GRADIENT_PENALTY_LOSSES:
            args["attn_fused"] = "off"
        return args

    def network_params(self) -> dict:
        """The ``models`` dict of ``torchgan.trainer.Trainer``: nets and Adam (TTUR)."""
        generator, discriminator = BACKBONES[self.backbone]
        return {
            "generator": {
                "name": generator,
                "args": self.generator_args(),
                "optimizer": {"name": Adam, "args": {"lr": self.g_lr, "betas": self.betas}},
            },
            "discriminator": {
                "name": discriminator,
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
            "retain_checkpoints": self.retain_checkpoints,
            "on_divergence": self.on_divergence,
            "max_rollbacks": self.max_rollbacks,
            "checkpoint_every": self.checkpoint_every,
            "keep_every": self.keep_every,
            "cuda_graphs": self.cuda_graphs,
        }
