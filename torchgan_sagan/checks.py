"""Every argument check of the package, in one place.

Each check raises a ``ValueError`` that names the argument, the value it got and
what would be accepted, so that a bad configuration fails at construction time
instead of as a shape error deep inside torch. The layers, nets, option groups,
configs and losses call these; none of them checks arguments on its own.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
    "IMAGE_BASES",
    "IMAGE_SIZES",
    "image_base",
    "LABEL_TYPES",
    "check_positive_int",
    "check_positive_float",
    "check_image_size",
    "check_choice",
    "check_scalar_reduction",
    "check_compile_with_loss",
    "check_betas",
    "check_ncritic",
    "check_resolutions",
    "check_attention",
    "check_amp",
    "check_ema",
    "check_policy",
    "check_classes",
    "check_labels",
    "parse_interval",
]

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 256

#: The label types of torchgan's models (see ``torchgan.models.Generator``).
LABEL_TYPES = ("none", "generated", "required")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int ≥ 1, else raise ``ValueError``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a number > 0, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


#: The smallest feature maps a net may start from (G) or end at (D): image sizes are
#: ``base * 2**k`` with a base of 4 to 7 and ``k >= 2`` (28 = 7 * 4, 48 = 6 * 8, 96 = 6 * 16;
#: the powers of two have base 4).
IMAGE_BASES = (4, 5, 6, 7)

#: Every image size the nets take, from :data:`MIN_IMAGE_SIZE` to :data:`MAX_IMAGE_SIZE`.
IMAGE_SIZES = tuple(sorted({b * 2**k for b in IMAGE_BASES for k in range(2, 7)
                            if MIN_IMAGE_SIZE <= b * 2**k <= MAX_IMAGE_SIZE}))


def image_base(size: int) -> int:
    """The base of an image size (:data:`IMAGE_SIZES`): 7 for 28, 6 for 48, 4 for 64."""
    while size >= 2 * IMAGE_BASES[0]:
        size //= 2
    return size


def _nearest(value: int, allowed: Sequence[int]) -> List[int]:
    below = [a for a in allowed if a < value]
    above = [a for a in allowed if a > value]
    return below[-1:] + above[:1]


def check_image_size(name: str, value: object, *, powers_of_two: bool = False) -> int:
    """Return ``value`` if it is one of :data:`IMAGE_SIZES` (only the powers of two with
    ``powers_of_two``), else raise a ``ValueError`` that names the nearest ones."""
    allowed = [2**k for k in range(4, 9)] if powers_of_two else list(IMAGE_SIZES)
    if not _is_int(value) or value not in allowed:
        kind = (f"a power of 2 from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}" if powers_of_two else
                f"base x 2**k with a base of {IMAGE_BASES[0]} to {IMAGE_BASES[-1]} and k >= 2, "
                f"from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
        near = f"; nearest: {' or '.join(map(str, _nearest(value, allowed)))}" if _is_int(value) else ""
        raise ValueError(f"{name} must be {kind} (one of {allowed}), got {value!r}{near}")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_scalar_reduction(loss: str, reduction: str) -> None:
    """Training backpropagates one number: a loss with ``reduction='none'`` is refused."""
    if reduction == "none":
        raise ValueError(
            f"{loss}(reduction='none') returns one loss per sample, but training needs a "
            f"scalar to backpropagate: use reduction='mean' or 'sum'"
        )


def check_compile_with_loss(compile: object, loss: str, double_backward_losses) -> None:
    """torch.compile cannot differentiate twice, which a gradient penalty does."""
    if compile and loss in double_backward_losses:
        raise ValueError(
            f"compile with the {loss!r} loss fails at the first step: its gradient penalty "
            f"differentiates D's gradient, and torch.compile does not support double backward; "
            f"leave compile off or choose a loss without a penalty"
        )


def check_betas(betas: object) -> Tuple[float, float]:
    """Adam's betas as two floats in [0, 1). Returned as floats: torch's Adam rejects a
    mix such as ``(0, 0.9)``."""
    try:
        pair = tuple(float(b) for b in betas)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(0.0 <= b < 1.0 for b in pair):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return pair  # type: ignore[return-value]


def check_ncritic(value: object) -> int:
    if not _is_int(value) or value == 0:
        raise ValueError(
            f"ncritic must be a non-zero integer (D steps per G step, or G steps per "
            f"D step if negative), got {value!r}"
        )
    return value


def check_resolutions(name: str, value: object) -> Optional[Tuple[int, ...]]:
    """``None`` (the net's default placement) or resolutions as a sorted tuple of ints."""
    if value is None:
        return None
    values = (value,) if _is_int(value) else value
    try:
        values = tuple(values)  # type: ignore[arg-type]
    except TypeError:
        values = (value,)
    if not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be feature-map resolutions such as (16,) or (), got {value!r}")
    return tuple(sorted(set(values)))


def check_attention(
    net: str, resolutions: Iterable[int], widths: Dict[int, int], step_channels: int,
    arg: str = "attn_resolutions",
) -> Tuple[int, ...]:
    """Attention resolutions that exist in a net with feature-map ``widths``
    (channels by resolution) and are wide enough for a C/8 query."""
    resolutions = tuple(sorted(set(resolutions)))
    for r in resolutions:
        if r not in widths:
            raise ValueError(
                f"{net}: {arg} contains {r!r}, but this net's feature maps "
                f"have resolutions {sorted(widths)}; choose from those"
            )
        if widths[r] < 8:
            raise ValueError(
                f"{net}: the attention block at {r}x{r} would see {widths[r]} channels, "
                f"and its query/key width is channels // 8 = 0. Raise step_channels "
                f"(now {step_channels}) or attend at a resolution with more channels"
            )
    return resolutions


def check_amp(amp: object, known: Sequence[str]) -> Optional[str]:
    if amp is not None and amp not in known:
        raise ValueError(
            f"amp must be None or one of {sorted(known)}, got {amp!r} (fp16 would need "
            f"loss scaling inside torchgan's losses, which they do not do; bf16 needs none)"
        )
    return amp  # type: ignore[return-value]


def check_ema(decay: object, start: object, *, optional: bool = False) -> None:
    """An EMA decay in [0, 1) (or ``None`` where ``optional``: no average) and a start
    step ≥ 0."""
    if optional and decay is None:
        pass
    elif isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be a number in [0, 1), such as 0.999, got {decay!r}")
    if not _is_int(start) or start < 0:  # type: ignore[operator]
        raise ValueError(f"EMA start must be a non-negative number of steps, got {start!r}")


def check_policy(policy: object, known: Sequence[str]) -> Tuple[str, ...]:
    """A DiffAugment policy (``"color,translation"``) as names in the order of ``known``;
    ``None`` or ``""`` -> ``()``."""
    if policy is None:
        return ()
    if not isinstance(policy, str):
        raise ValueError(f"a DiffAugment policy is a comma-separated string such as "
                         f"'color,translation,cutout', got {policy!r}")
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown DiffAugment transformation(s) {unknown} in {policy!r}; "
                         f"choose from {', '.join(known)}")
    return tuple(name for name in known if name in names)


def check_classes(net: str, num_classes: object, label_type: Optional[str], default: str) -> str:
    """Validate ``num_classes`` against ``label_type``; return the label type to use."""
    if not _is_int(num_classes) or num_classes < 0:  # type: ignore[operator]
        raise ValueError(f"{net}: num_classes must be 0 (unconditional) or a positive "
                         f"number of classes, got {num_classes!r}")
    if label_type is None:
        return default if num_classes else "none"
    check_choice("label_type", label_type, LABEL_TYPES)
    if num_classes == 0 and label_type != "none":
        raise ValueError(f"{net}: label_type={label_type!r} needs a class-conditional net; "
                         f"pass num_classes (the number of classes) as well")
    if num_classes and label_type == "none":
        raise ValueError(f"{net}: a class-conditional net (num_classes={num_classes}) needs "
                         f"labels; use label_type='generated' or 'required'")
    return label_type


def check_labels(net: str, num_classes: int, labels: Optional[torch.Tensor], batch: int) -> Tuple[torch.Tensor, ...]:
    """Validate the labels passed to a net; return them as extra arguments for its
    layers: ``(labels,)`` for a conditional net, ``()`` for an unconditional one."""
    if not num_classes:
        if labels is not None:
            raise ValueError(f"{net} got labels but is unconditional; build it "
                             f"with num_classes to condition on classes")
        return ()
    if labels is None:
        raise ValueError(f"{net} is class-conditional (num_classes={num_classes}) and needs "
                         f"labels: call it as net(x, labels) with labels of shape ({batch},)")
    if labels.shape != (batch,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{net} expects integer labels of shape ({batch},), got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}")
    if labels.numel():
        if labels.device.type == "cpu" and not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            low, high = (int(v) for v in torch.aminmax(labels))  # one pass
            if low < 0 or high >= num_classes:
                raise ValueError(f"{net}: labels must lie in [0, {num_classes}), got values from "
                                 f"{low} to {high}")
        else:
            # On an accelerator, or while compiling or exporting: checked on the device,
            # without reading the labels back to the host.
            in_range = ((labels >= 0) & (labels < num_classes)).all()
            torch._assert_async(in_range, f"{net}: labels must lie in [0, {num_classes})")
    return (labels,)


_TIME_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(name: str, value: object) -> Optional[Tuple[str, float]]:
    """An interval of mid-epoch checkpoints: ``None`` (none), a number of iterations
    (``500`` or ``"500"``) -> ``("iterations", 500)``, or a time (``"90s"``, ``"20m"``,
    ``"1h"``) -> ``("seconds", 1200.0)``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    unit = _TIME_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        amount = float(number) if unit else int(number)
    except ValueError:
        amount = 0
    if isinstance(value, bool) or not amount > 0:
        raise ValueError(f"{name} takes a number of iterations (500) or a time (90s, 20m, 1h), got {value!r}")
    return ("seconds", amount * unit) if unit else ("iterations", amount)
