"""Self-Attention GANs (SAGAN) for torchgan.

Importing this package applies
:func:`torchgan_sagan.trainer.torchgan_fixes.apply_torchgan_fixes`, which lets torchgan
0.1.0's ``Trainer`` log images and load checkpoints on current torch and torchvision,
and registers the named configs of :mod:`torchgan_sagan.recipe.presets`. Nothing else
happens at import time.

The layout, from the bottom up: ``checks.py`` (argument checks), ``files.py``
(atomic writes, the classes a checkpoint may hold) and ``locks.py`` (locks in files); ``layers/`` (attention, spectral
norm, conditional BatchNorm), ``losses.py`` and ``augment.py``; ``models/`` (the nets, their options, the moving average); ``data/``;
``metrics/``; ``visualize.py``; ``recipe/`` (configs, presets, registry, flags);
``trainer/``; and the commands ``generate.py``, ``evaluate.py`` and ``export.py``
(``python -m torchgan_sagan.generate`` ...). Each imports only from those before it.
"""

from .recipe import LOSSES, SAGANConfig, get_config, list_configs, register_config
from .data import ImageFiles, embedded_digits, embedded_faces, find_images, folder_transform
from .layers import (
    SelfAttention2d,
    apply_spectral_norm,
    refresh_spectral_norm,
    spectral_norm,
    spectral_norm_of,
)
from .losses import (
    HingeDiscriminatorLoss,
    HingeGeneratorLoss,
    LeastSquaresDiscriminatorLoss,
    LeastSquaresGeneratorLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from .models import (AttentionOptions, AugmentOptions, EMAOptions, SAGANDiscriminator, SAGANGenerator,
                     SAGANResNetDiscriminator, SAGANResNetGenerator, SpeedOptions)
from .trainer import DivergenceError, SAGANTrainer, apply_torchgan_fixes, load_generator, make_trainer, train_step
from .visualize import attention_figure, image_grid, real_vs_fake_figure

__version__ = "0.1.0"

__all__ = [
    "apply_torchgan_fixes",
    "LOSSES",
    "SAGANConfig",
    "register_config",
    "get_config",
    "list_configs",
    "make_trainer",
    "train_step",
    "SAGANTrainer",
    "DivergenceError",
    "load_generator",
    "AttentionOptions",
    "SpeedOptions",
    "EMAOptions",
    "AugmentOptions",
    "SelfAttention2d",
    "spectral_norm",
    "apply_spectral_norm",
    "spectral_norm_of",
    "refresh_spectral_norm",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "HingeGeneratorLoss",
    "HingeDiscriminatorLoss",
    "LeastSquaresGeneratorLoss",
    "LeastSquaresDiscriminatorLoss",
    "SAGANGenerator",
    "SAGANResNetGenerator",
    "SAGANResNetDiscriminator",
    "SAGANDiscriminator",
    "find_images",
    "folder_transform",
    "ImageFiles",
    "embedded_faces",
    "embedded_digits",
    "image_grid",
    "attention_figure",
    "real_vs_fake_figure",
]

apply_torchgan_fixes()
