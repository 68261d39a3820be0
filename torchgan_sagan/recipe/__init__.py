"""The recipe: a typed config of nets, loss, optimizers and training length
(``configs.py``), named configs in a registry (``registry.py``, filled by
``presets.py``), and the same fields as command-line flags (``cli.py``). The nets'
own options live with the nets (:mod:`torchgan_sagan.models.options`)."""

from . import presets  # noqa: F401  (registers the named configs)
from .configs import GRADIENT_PENALTY_LOSSES, LOSSES, SAGANConfig
from .registry import get_config, list_configs, register_config

__all__ = ["SAGANConfig", "LOSSES", "GRADIENT_PENALTY_LOSSES", "register_config", "get_config", "list_configs"]
