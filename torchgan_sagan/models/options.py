"""The nets' option groups, each option defined once.

An option is a field of one of the small frozen dataclasses below, with its help
text (and command-line details) in the field's metadata. Everything else is derived
from these definitions:

- the nets' keyword arguments, their signature and the options part of their
  docstrings (:func:`takes_options`);
- the fields of :class:`~torchgan_sagan.recipe.configs.SAGANConfig` and its mapping onto each
  net's arguments (:func:`option_fields`, :func:`net_options`);
- the flags of ``examples/celeba.py`` and their help, and the ``+tag`` shorthands of
  ``name+tag`` specs (:mod:`torchgan_sagan.recipe.cli`).

So adding an option means adding a field to its group (and what it does, in the code
that reads the group), its test, and its line in the docs.

Groups: :class:`AttentionOptions` and :class:`SpeedOptions` (both nets),
:class:`EMAOptions` (generator), :class:`AugmentOptions` (discriminator).
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterator, Optional, Tuple, Type, Union

import torch
import torch.nn as nn

from ..checks import check_amp, check_choice, check_ema, check_positive_int, check_resolutions
from ..augment import AUGMENTATIONS, parse_policy
from ..layers.attention import ATTENTION_LAYOUTS, FUSED_MODES, fused_mode

__all__ = [
    "option",
    "OptionGroup",
    "AttentionOptions",
    "SpeedOptions",
    "EMAOptions",
    "AugmentOptions",
    "OPTION_GROUPS",
    "AMP_DTYPES",
    "takes_options",
    "split_options",
    "option_fields",
    "net_options",
]

#: Mixed-precision modes of the ``amp`` option.
AMP_DTYPES = {"bf16": torch.bfloat16}


def option(default: Any, help: str, *, per_net: bool = False, tags: Optional[Dict[str, Any]] = None,
           cli: Optional[Dict[str, Any]] = None) -> Any:
    """A field of an option group.

    Args:
        default: the value when the option is not given.
        help: one sentence for docstrings, ``--help`` and the docs.
        per_net: :class:`~torchgan_sagan.recipe.configs.SAGANConfig` keeps one value per
            net (``g_<name>``, ``d_<name>``) instead of one for both.
        tags: ``name+tag`` shorthands, ``{tag: value}`` (:func:`torchgan_sagan.recipe.cli.parse_spec`).
        cli: extra ``argparse`` keyword arguments for its flag (``metavar``,
            ``nargs``, ``const``, ``choices``, ``aliases``).
    """
    return field(default=default, metadata={"help": help, "per_net": per_net, "tags": dict(tags or {}),
                                            "cli": dict(cli or {})})


class OptionGroup:
    """Base of the option groups (frozen dataclasses whose fields are options).

    ``NETS`` says which nets take the group: ``"G"``, ``"D"`` or ``"GD"``.
    """

    NETS: ClassVar[str] = "GD"

    @classmethod
    def options(cls) -> Tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)  # type: ignore[arg-type]

    @classmethod
    def take(cls, kwargs: Dict[str, Any]) -> "OptionGroup":
        """The group made of (and popped from) the options of ``kwargs``."""
        return cls(**{f.name: kwargs.pop(f.name) for f in cls.options() if f.name in kwargs})


@dataclass(frozen=True)
class AttentionOptions(OptionGroup):
    """Self-attention blocks (:class:`~torchgan_sagan.layers.SelfAttention2d`)."""

    attn_resolutions: Optional[Tuple[int, ...]] = option(
        None, "feature-map resolutions followed by self-attention, each one of 4, 8, ..., size // 2; "
              "None: one block at min(32, size // 2), the placement the paper's ablation favours",
        per_net=True, tags={"noattn": ()}, cli={"type": int, "nargs": "*", "metavar": "RES"})
    attn_layout: str = option(
        "official", "'official' (the paper's code: C/8 queries and keys, C/2 values, keys and values "
                    "max-pooled 2x2, a 1x1 output conv) or 'torchgan' (torchgan's SelfAttention2d "
                    "projections: C/8 queries and keys, C values)",
        tags={"official": "official", "dropin": "torchgan"}, cli={"choices": ATTENTION_LAYOUTS})
    attn_fused: Union[bool, str] = option(
        "auto", "softmax(q k^T) v through PyTorch's fused kernel ('on': no N x N map, first derivatives "
                "only, so a config runs D's 'off' under a gradient-penalty loss), as the explicit map "
                "('off'), or 'auto': the explicit map on a CPU where the map is small, the fused kernel "
                "elsewhere", tags={"unfused": "off", "fused": "on"},
        cli={"nargs": "?", "const": "on", "choices": FUSED_MODES, "metavar": "MODE"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "attn_resolutions", check_resolutions("attn_resolutions", self.attn_resolutions))
        object.__setattr__(self, "attn_fused", fused_mode(self.attn_fused))
        check_choice("attn_layout", self.attn_layout, ATTENTION_LAYOUTS)


@dataclass(frozen=True)
class SpeedOptions(OptionGroup):
    """Speed options; each is off unless asked for."""

    channels_last: bool = option(False, "keep weights and activations in channels-last memory format",
                                 tags={"cl": True})
    compile: Union[bool, str] = option(
        False, "torch.compile the layer stack in place (the first call compiles; state_dict keys "
               "stay the same); a string names the backend",
        tags={"compile": True}, cli={"nargs": "?", "const": True, "metavar": "BACKEND"})
    amp: Optional[str] = option(None, "'bf16': run the layers under autocast (output in float32), "
                                      "meant for GPUs", tags={"bf16": "bf16"}, cli={"choices": sorted(AMP_DTYPES)})

    def __post_init__(self) -> None:
        check_amp(self.amp, AMP_DTYPES)

    def prepare(self, net: nn.Module, layers: nn.Module) -> None:
        """Put ``net`` in the memory format asked for and compile its ``layers``."""
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        if self.compile:
            layers.compile(**({"backend": self.compile} if isinstance(self.compile, str) else {}))

    def run(self, layers: nn.Module, x: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        """``layers(x, *labels)`` in the memory format and precision asked for."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp is None:
            return layers(x, *labels)
        with torch.autocast(x.device.type, dtype=AMP_DTYPES[self.amp]):
            return layers(x, *labels).float()


@dataclass(frozen=True)
class EMAOptions(OptionGroup):
    """A moving average of G's weights (:mod:`torchgan_sagan.models.ema`), which G runs in eval
    mode (sample grids, metrics) and saves in its ``state_dict``."""

    NETS: ClassVar[str] = "G"

    ema_decay: Optional[float] = option(
        None, "keep a moving average of G's weights with this decay (e.g. 0.999), updated after every "
              "optimizer step that trains G; None: no average",
        cli={"metavar": "DECAY", "aliases": ["--ema"]})
    ema_start: int = option(0, "optimizer steps before the average starts (it copies G until then)",
                            cli={"metavar": "STEPS"})
    ema_statistics_batches: int = option(
        4, "batches of 64 noise vectors over which the average's BatchNorm statistics are recomputed "
            "before it draws or is saved", cli={"metavar": "N"})

    def __post_init__(self) -> None:
        check_ema(self.ema_decay, self.ema_start, optional=True)
        check_positive_int("ema_statistics_batches", self.ema_statistics_batches)


@dataclass(frozen=True)
class AugmentOptions(OptionGroup):
    """DiffAugment (:mod:`torchgan_sagan.augment`) of every image D sees in training."""

    NETS: ClassVar[str] = "D"

    diffaugment: Optional[str] = option(
        None, "a DiffAugment policy, a comma-separated subset of " + ",".join(AUGMENTATIONS)
              + "; None: no augmentation",
        tags={"diffaug": ",".join(AUGMENTATIONS)},
        cli={"nargs": "?", "const": ",".join(AUGMENTATIONS), "metavar": "POLICY"})

    def __post_init__(self) -> None:
        parse_policy(self.diffaugment)


OPTION_GROUPS: Tuple[Type[OptionGroup], ...] = (AttentionOptions, SpeedOptions, EMAOptions, AugmentOptions)


def _groups_of(net: str) -> Tuple[Type[OptionGroup], ...]:
    return tuple(group for group in OPTION_GROUPS if net in group.NETS)


def _options_doc(groups) -> str:
    lines = ["", "", "    Options (keyword-only; defined in :mod:`torchgan_sagan.models.options`):"]
    for group in groups:
        for f in group.options():
            lines.append(textwrap.fill(f"{f.name}: {f.metadata['help']} (default {f.default!r}).", width=88,
                                       initial_indent=" " * 8, subsequent_indent=" " * 12))
    return "\n".join(lines)


def takes_options(net: str):
    """Class decorator for a net whose ``__init__`` takes ``**options``: the options of
    the groups for ``net`` (``"G"`` or ``"D"``) become keyword-only parameters of its
    signature and lines of its docstring, and ``cls.OPTION_GROUPS`` lists the groups."""

    def decorate(cls):
        groups = _groups_of(net)
        names = {f.name for group in groups for f in group.options()}
        signature = inspect.signature(cls.__init__)  # a subclass's inherited __init__ has them already
        params = [p for p in signature.parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in names]
        for group in groups:
            params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                         annotation=f.type) for f in group.options()]
        cls.__init__.__signature__ = signature.replace(parameters=params)
        cls.__doc__ = (cls.__doc__ or "").rstrip() + _options_doc(groups)
        cls.OPTION_GROUPS = groups
        return cls

    return decorate


def split_options(net: nn.Module, options: Dict[str, Any]) -> Dict[Type[OptionGroup], OptionGroup]:
    """The option groups of ``net`` built from its ``**options``; a name that is no
    option of this net is a ``TypeError`` that lists the ones it has."""
    options = dict(options)
    groups = {group: group.take(options) for group in type(net).OPTION_GROUPS}
    if options:
        known = [f.name for group in groups for f in group.options()]
        raise TypeError(f"{type(net).__name__} got unexpected argument(s) {sorted(options)}; "
                        f"its options are {known}")
    return groups


def _config_names(f: dataclasses.Field) -> Iterator[Tuple[str, str]]:
    """(config field name, net) pairs of one option."""
    if f.metadata["per_net"]:
        yield "g_" + f.name, "G"
        yield "d_" + f.name, "D"
    else:
        yield f.name, ""


def option_fields(cls):
    """Class decorator, applied before ``@dataclass``: add a field to ``cls`` for every
    option (``g_``/``d_`` pairs for per-net options), with the option's default and
    metadata, unless ``cls`` declares it itself (to give it another default)."""
    annotations = cls.__dict__.get("__annotations__", {})
    for group in OPTION_GROUPS:
        types = typing.get_type_hints(group)
        for f in group.options():
            for name, which in _config_names(f):
                if name not in annotations:
                    annotations[name] = types[f.name]
                    help = f"{which}: {f.metadata['help']}" if which else f.metadata["help"]
                    setattr(cls, name, field(default=f.default, metadata={**f.metadata, "help": help}))
    cls.__annotations__ = annotations
    return cls


def net_options(config: Any, net: str, *, group: Optional[Type[OptionGroup]] = None) -> Dict[str, Any]:
    """The options of ``config`` (a dataclass made with :func:`option_fields`) for
    ``net`` (``"G"`` or ``"D"``; only ``group``'s if given), as the net's keyword
    arguments; options at their default are left out."""
    args = {}
    for group in _groups_of(net) if group is None else (group,):
        for f in group.options():
            name = next(n for n, which in _config_names(f) if which in ("", net))
            value = getattr(config, name)
            if value != f.default:
                args[f.name] = value
    return args
