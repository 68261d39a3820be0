r"""The hinge loss pair used by SAGAN, as functions and as torchgan losses.

.. math::
    L_D = \mathbb{E}_x[\max(0, 1 - D(x))] + \mathbb{E}_z[\max(0, 1 + D(G(z)))] \\
    L_G = -\mathbb{E}_z[D(G(z))]

``D`` must return raw logits (no sigmoid or tanh): a bounded output would keep
the margins of the discriminator loss from ever being reached.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchgan.losses import DiscriminatorLoss, GeneratorLoss

from ._validation import check_choice, check_scalar_reduction

__all__ = [
    "REDUCTIONS",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "HingeGeneratorLoss",
    "HingeDiscriminatorLoss",
]

REDUCTIONS = ("mean", "sum", "none")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x


def hinge_generator_loss(dgz: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Generator hinge loss ``-D(G(z))``, reduced by ``"mean"``, ``"sum"`` or ``"none"``."""
    check_choice("reduction", reduction, REDUCTIONS)
    return _reduce(-dgz, reduction)


def hinge_discriminator_loss(
    dx: torch.Tensor, dgz: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Discriminator hinge loss ``relu(1 - D(x)) + relu(1 + D(G(z)))``.

    With ``"mean"`` each term is averaged over its own batch, so real and fake
    batches may differ in size; ``"sum"`` sums both terms; ``"none"`` returns the
    per-sample sum and needs ``dx`` and ``dgz`` of one shape.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    real = F.relu(1.0 - dx)
    fake = F.relu(1.0 + dgz)
    if reduction == "none":
        if dx.shape != dgz.shape:
            raise ValueError(
                f"reduction='none' pairs real and fake scores sample by sample and needs "
                f"one shape, got dx {tuple(dx.shape)} and dgz {tuple(dgz.shape)}"
            )
        return real + fake
    return _reduce(real, reduction) + _reduce(fake, reduction)


def _scalar_train_ops(train_ops: Callable) -> Callable:
    """torchgan's ``train_ops``, refusing ``reduction='none'`` first (training needs a
    scalar loss). The wrapper keeps the signature of torchgan's method, from which the
    Trainer maps its attributes to the arguments by name."""

    @functools.wraps(train_ops)
    def checked(self, *args, **kwargs):
        check_scalar_reduction(type(self).__name__, self.reduction)
        return train_ops(self, *args, **kwargs)

    return checked


def _generator_step(train_ops: Callable) -> Callable:
    """torchgan's generator ``train_ops`` (signature kept), computing no gradients for
    D's weights: only G is updated in this step, and D's weight gradients would be
    thrown away (and, under DDP, all-reduced first). With ``freeze_discriminator`` the
    step sees the net inside a DDP wrapper, with its parameters frozen for the step."""
    checked = _scalar_train_ops(train_ops)

    @functools.wraps(train_ops)
    def step(self, generator, discriminator, *args, **kwargs):
        if not getattr(self, "freeze_discriminator", True):
            return checked(self, generator, discriminator, *args, **kwargs)
        if isinstance(discriminator, DistributedDataParallel):
            discriminator = discriminator.module
        frozen = [p for p in discriminator.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            return checked(self, generator, discriminator, *args, **kwargs)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    return step


class HingeGeneratorLoss(GeneratorLoss):
    r"""Hinge loss for the generator, :math:`L_G = -\mathbb{E}_z[D(G(z))]`.

    A torchgan ``GeneratorLoss``: give it to ``torchgan.trainer.Trainer`` in the
    losses list. ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``
    (``"none"`` only outside the Trainer, which needs a scalar). In its training step
    D's weights get no gradients (``freeze_discriminator``, on by default): G's update
    needs only the gradient through D's input.
    """

    def __init__(self, reduction: str = "mean", override_train_ops=None, *,
                 freeze_discriminator: bool = True) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), override_train_ops)
        self.freeze_discriminator = freeze_discriminator

    def forward(self, dgz: torch.Tensor) -> torch.Tensor:
        return hinge_generator_loss(dgz, self.reduction)

    train_ops = _generator_step(GeneratorLoss.train_ops)


class HingeDiscriminatorLoss(DiscriminatorLoss):
    r"""Hinge loss for the discriminator,
    :math:`L_D = \mathbb{E}[\max(0, 1 - D(x))] + \mathbb{E}[\max(0, 1 + D(G(z)))]`.

    A torchgan ``DiscriminatorLoss``: give it to ``torchgan.trainer.Trainer`` in the
    losses list. ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``
    (``"none"`` only outside the Trainer, which needs a scalar).
    """

    def __init__(self, reduction: str = "mean", override_train_ops=None) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), override_train_ops)

    def forward(self, dx: torch.Tensor, dgz: torch.Tensor) -> torch.Tensor:
        return hinge_discriminator_loss(dx, dgz, self.reduction)

    train_ops = _scalar_train_ops(DiscriminatorLoss.train_ops)
