"""The registry of named SAGAN configs, as timm registers its models.

Register a function that returns a :class:`~torchgan_sagan.recipe.configs.SAGANConfig` with
the :func:`register_config` decorator; its name is the key and its docstring the
config's ``source``. :func:`get_config` builds one with overrides, and
:func:`list_configs` lists names by wildcard. The package's own recipes are in
:mod:`torchgan_sagan.recipe.presets`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable, Dict, List

from .configs import SAGANConfig

__all__ = ["register_config", "get_config", "list_configs"]

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
    return cfg.replace(**{"source": source, **overrides})
