"""Argument checks shared by the layers, nets and losses.

Each check raises a ``ValueError`` that names the argument, the value it got and
what would be accepted, so that a bad configuration fails at construction time
instead of as a shape error deep inside torch.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["check_positive_int", "check_image_size", "check_choice"]

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 256


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int ≥ 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_image_size(name: str, value: object) -> int:
    """Return ``value`` if it is a power of 2 between 16 and 256, else raise."""
    allowed = [2**k for k in range(4, 9)]
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise ValueError(
            f"{name} must be a power of 2 from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
            f"(one of {allowed}), got {value!r}"
        )
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]
