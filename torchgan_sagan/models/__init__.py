"""The SAGAN nets as torchgan models: :class:`SAGANGenerator` (``generator.py``),
:class:`SAGANDiscriminator` (``discriminator.py``) and what they share
(``common.py``)."""

from .common import default_attn_resolutions
from .discriminator import SAGANDiscriminator
from .generator import SAGANGenerator

__all__ = ["SAGANGenerator", "SAGANDiscriminator", "default_attn_resolutions"]
