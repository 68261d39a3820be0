"""The SAGAN nets as torchgan models: the DCGAN-style :class:`SAGANGenerator`
(``generator.py``) and :class:`SAGANDiscriminator` (``discriminator.py``), the paper's
residual :class:`SAGANResNetGenerator` and :class:`SAGANResNetDiscriminator`
(``resnet.py``), and what they share (``common.py``)."""

from .common import default_attn_resolutions
from .discriminator import SAGANDiscriminator
from .generator import SAGANGenerator
from .resnet import SAGANResNetDiscriminator, SAGANResNetGenerator

#: The two backbones by name: (generator class, discriminator class).
BACKBONES = {
    "dcgan": (SAGANGenerator, SAGANDiscriminator),
    "resnet": (SAGANResNetGenerator, SAGANResNetDiscriminator),
}

__all__ = ["SAGANGenerator", "SAGANDiscriminator", "SAGANResNetGenerator", "SAGANResNetDiscriminator",
           "BACKBONES", "default_attn_resolutions"]
