"""The SAGAN nets as torchgan models: the DCGAN-style :class:`SAGANGenerator`
(``generator.py``) and :class:`SAGANDiscriminator` (``discriminator.py``), the paper's
residual :class:`SAGANResNetGenerator` and :class:`SAGANResNetDiscriminator`
(``resnet.py``), what they share (``common.py``), their typed options
(``options.py``), the moving average of G's weights (``ema.py``), and torchgan's own
SAGAN tutorial nets for comparisons (``torchgan_tutorial.py``)."""

from .common import default_attn_resolutions
from .discriminator import SAGANDiscriminator
from .ema import WeightEMA
from .generator import SAGANGenerator
from .options import AttentionOptions, AugmentOptions, EMAOptions, SpeedOptions
from .resnet import SAGANResNetDiscriminator, SAGANResNetGenerator

#: The two backbones by name: (generator class, discriminator class).
BACKBONES = {
    "dcgan": (SAGANGenerator, SAGANDiscriminator),
    "resnet": (SAGANResNetGenerator, SAGANResNetDiscriminator),
}

__all__ = ["SAGANGenerator", "SAGANDiscriminator", "SAGANResNetGenerator", "SAGANResNetDiscriminator",
           "BACKBONES", "default_attn_resolutions", "WeightEMA", "AttentionOptions", "SpeedOptions",
           "EMAOptions", "AugmentOptions"]
