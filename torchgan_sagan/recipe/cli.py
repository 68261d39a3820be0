"""Command lines derived from the config's fields: flags, and ``name+tag`` specs.

:func:`add_config_flags` gives an ``argparse`` parser one flag per
:class:`~torchgan_sagan.recipe.configs.SAGANConfig` field (``--step-channels``,
``--ema-decay``, ...), typed and documented from the field's definition;
:func:`config_overrides` reads back the ones given. Nothing about a field is
written twice: a new field or option has its flag at once.

:func:`run_command` runs the package's commands (``python -m torchgan_sagan.generate``,
``.evaluate``, ``.export``): a problem with the input is one line and exit status 2.

:func:`parse_spec` reads ``name+tag+tag`` specs such as ``hinge+cl+ema`` (like
timm's ``name.tag``): a base name and shorthands for config overrides. The
shorthands come from the fields' ``tags`` metadata (:data:`TAGS`: ``cl``,
``dropin``, ``bf16``, ...), plus any a script adds for itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch

from ..data.folders import SQUARE
from .configs import SAGANConfig

__all__ = ["TAGS", "config_fields", "add_config_flags", "config_overrides", "parse_spec", "CommandError",
           "OneLineErrors", "crop_value", "parse_device", "command_parser", "require_at_least", "run_command"]


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


class CommandError(Exception):
    """A problem with a command's input, reported in one line with exit status 2."""


def parse_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...; a name that is
    not a device, or CUDA where there is none, is a :class:`CommandError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CommandError(f"--device {name!r} is not a device name (try auto, cpu or cuda)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name} asked for, but CUDA is not available here; use --device cpu")
    return device


def crop_value(value: str) -> Union[int, str]:
    """``--crop``: a size in pixels, ``square`` (the largest center square) or 0 (none)."""
    if value == SQUARE:
        return value
    try:
        crop = int(value)
    except ValueError:
        crop = -1
    if crop < 0:
        raise argparse.ArgumentTypeError(f"--crop takes a size in pixels, 'square' or 0 (none), got {value!r}")
    return crop


class OneLineErrors(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (the problem, and where the flags
    are listed), not the usage of every flag followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the flags)\n")


def command_parser(command: str, description: str, out_help: str, *,
                   samples: Optional[Tuple[int, str]] = None, seed: int = 0) -> argparse.ArgumentParser:
    """The parser of ``python -m torchgan_sagan.<command>`` with what every command on a
    trained run takes (the run, ``--out``, ``--device``, ``--trust-checkpoint``) and,
    given ``samples`` (default count, help), ``--num`` (or ``--num-samples``), ``--seed`` and
    ``--batch-size``."""
    parser = OneLineErrors(prog=f"python -m torchgan_sagan.{command}", description=description)
    parser.add_argument("run", type=Path, help="a run folder (its newest intact checkpoint) or a checkpoint file")
    parser.add_argument("--out", type=Path, help=out_help)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--trust-checkpoint", action="store_true", help="load a checkpoint that holds objects "
                        "outside the allowlist (this runs their code: only for files you trust)")
    if samples is not None:
        parser.add_argument("--num", "--num-samples", dest="num", type=int, default=samples[0], help=samples[1])
        parser.add_argument("--seed", type=int, default=seed)
        parser.add_argument("--batch-size", type=int, default=250, help="images generated at once")
    return parser


def require_at_least(args: argparse.Namespace, minimum: int, *names: str) -> None:
    """A :class:`CommandError` naming the first of ``names`` (attributes of ``args``)
    whose value is below ``minimum``."""
    for name in names:
        value = getattr(args, name)
        if value < minimum:
            qualifier = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise CommandError(f"--{name.replace('_', '-')} must be {qualifier}, got {value}")


def run_command(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any],
                argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and ``run`` the command; ``CommandError``, ``ValueError``,
    ``FileNotFoundError`` and ``ImportError`` become one line on stderr and exit
    status 2."""
    args = parser.parse_args(argv)
    try:
        run(args)
    except (CommandError, ValueError, FileNotFoundError, ImportError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0
