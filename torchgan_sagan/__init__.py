"""Self-Attention GANs (SAGAN) for torchgan.

Importing this package applies :func:`torchgan_sagan.compat.apply_torchgan_fixes`,
which lets torchgan 0.1.0's ``Trainer`` log images and load checkpoints on current
torch and torchvision, and registers the named configs of
:mod:`torchgan_sagan.presets`. Nothing else happens at import time.
"""

from . import presets  # noqa: F401  (registers the named configs)
from .compat import apply_torchgan_fixes
from .configs import LOSSES, SAGANConfig
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
from .models import SAGANDiscriminator, SAGANGenerator
from .options import AttentionOptions, AugmentOptions, EMAOptions, SpeedOptions
from .registry import get_config, list_configs, register_config
from .runs import load_generator
from .training import SAGANTrainer, make_trainer, train_step
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
