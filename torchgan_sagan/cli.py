"""Command lines derived from the config's fields: flags, and ``name+tag`` specs.

:func:`add_config_flags` gives an ``argparse`` parser one flag per
:class:`~torchgan_sagan.configs.SAGANConfig` field (``--step-channels``,
``--ema-decay``, ...), typed and documented from the field's definition;
:func:`config_overrides` reads back the ones given. Nothing about a field is
written twice: a new field or option has its flag at once.

:func:`parse_spec` reads ``name+tag+tag`` specs such as ``hinge+cl+ema`` (like
timm's ``name.tag``): a base name and shorthands for config overrides. The
shorthands come from the fields' ``tags`` metadata (:data:`TAGS`: ``cl``,
``dropin``, ``bf16``, ...), plus any a script adds for itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from .configs import SAGANConfig

__all__ = ["TAGS", "config_fields", "add_config_flags", "config_overrides", "parse_spec"]


def config_fields() -> Tuple[dataclasses.Field, ...]:
    """The fields of :class:`SAGANConfig`."""
    return dataclasses.fields(SAGANConfig)


def _derive_tags() -> Dict[str, Dict[str, Any]]:
    tags: Dict[str, Dict[str, Any]] = {}
    for f in config_fields():
        for tag, value in f.metadata.get("tags", {}).items():
            tags.setdefault(tag, {})[f.name] = value
    return tags


#: ``+tag`` shorthands of :func:`parse_spec`, by tag: the config fields each sets.
TAGS: Dict[str, Dict[str, Any]] = _derive_tags()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _flag_kwargs(f: dataclasses.Field, hint: Any) -> Dict[str, Any]:
    """``add_argument`` keyword arguments for a field of type ``hint``."""
    cli = {k: v for k, v in f.metadata.get("cli", {}).items() if k != "aliases"}
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:  # Optional[X], Union[bool, str]
        hint = next(a for a in args if a not in (type(None), bool)) if "nargs" in cli else \
            next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction, **cli}
    if typing.get_origin(hint) is tuple:
        item = args[0]
        cli.setdefault("nargs", "*" if args[-1] is Ellipsis else len(args))
        cli.setdefault("type", item)
        cli.setdefault("metavar", item.__name__.upper())
        return cli
    cli.setdefault("type", hint)
    return cli


def add_config_flags(parser: argparse.ArgumentParser, *, exclude: Iterable[str] = (),
                     title: str = "config fields (override the config's values)") -> None:
    """Add a flag for every config field but those in ``exclude``; a flag that is not
    given leaves the config's value (read them back with :func:`config_overrides`)."""
    exclude = set(exclude)
    unknown = exclude - {f.name for f in config_fields()}
    if unknown:
        raise ValueError(f"exclude names no config field: {sorted(unknown)}")
    hints = typing.get_type_hints(SAGANConfig)
    group = parser.add_argument_group(title)
    for f in config_fields():
        if f.name in exclude:
            continue
        names = [flag_name(f.name), *f.metadata.get("cli", {}).get("aliases", [])]
        group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=f.metadata["help"],
                           **_flag_kwargs(f, hints[f.name]))


def config_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config fields given on the command line (see :func:`add_config_flags`)."""
    given = vars(args)
    return {f.name: given[f.name] for f in config_fields() if f.name in given}


def parse_spec(spec: str, bases: Optional[Iterable[str]] = None, *,
               extra_tags: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Tuple[str, Dict[str, Any]]:
    """``"hinge+cl"`` -> ``("hinge", {"channels_last": True})``.

    ``bases`` lists the allowed names (any if ``None``); ``extra_tags`` adds tags to
    :data:`TAGS` (and wins over them). Later tags win over earlier ones. An unknown
    base or tag is a ``ValueError`` naming the known ones.
    """
    tags = {**TAGS, **(extra_tags or {})}
    base, *names = spec.split("+")
    if bases is not None and base not in bases:
        raise ValueError(f"unknown name {base!r} in {spec!r}; use one of {list(bases)}, optionally "
                         f"with +tags from {sorted(tags)}")
    overrides: Dict[str, Any] = {}
    for name in names:
        if name not in tags:
            raise ValueError(f"unknown tag +{name} in {spec!r}; use {['+' + t for t in sorted(tags)]}")
        overrides.update(tags[name])
    return base, overrides
