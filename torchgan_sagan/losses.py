r"""The loss pairs this package trains with, as torchgan losses.

The hinge pair used by SAGAN, as functions and as modules:

.. math::
    L_D = \mathbb{E}_x[\max(0, 1 - D(x))] + \mathbb{E}_z[\max(0, 1 + D(G(z)))] \\
    L_G = -\mathbb{E}_z[D(G(z))]

``D`` must return raw logits (no sigmoid or tanh): a bounded output would keep
the margins of the discriminator loss from ever being reached.

The least-squares pair (Mao et al. 2017), torchgan's own losses given this package's
training steps: the presets' default, as it measured best on the digits
(docs/results.md).

.. math::
    L_D = \tfrac12\mathbb{E}_x[(D(x) - b)^2] + \tfrac12\mathbb{E}_z[(D(G(z)) - a)^2] \\
    L_G = \tfrac12\mathbb{E}_z[(D(G(z)) - c)^2]

The clipped Wasserstein pair (Arjovsky et al. 2017) of torchgan's tutorial, likewise
torchgan's losses with this package's steps, D's weights clamped before each D step as
torchgan clamps them.

These pairs train through the same steps (``train_ops``): the loss comes back as a
detached device scalar (no host sync), D's weights get no gradients in G's step, and
D's spectrally normalized weights are computed once per D step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.parallel import DistributedDataParallel
from torchgan.losses import (
    DiscriminatorLoss,
    GeneratorLoss,
    LeastSquaresDiscriminatorLoss as _TorchganLeastSquaresDiscriminatorLoss,
    LeastSquaresGeneratorLoss as _TorchganLeastSquaresGeneratorLoss,
    WassersteinDiscriminatorLoss as _TorchganWassersteinDiscriminatorLoss,
    WassersteinGeneratorLoss as _TorchganWassersteinGeneratorLoss,
)

from .checks import check_choice, check_scalar_reduction
from .files import register_checkpoint_class

__all__ = [
    "REDUCTIONS",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "HingeGeneratorLoss",
    "HingeDiscriminatorLoss",
    "LeastSquaresGeneratorLoss",
    "LeastSquaresDiscriminatorLoss",
    "WassersteinGeneratorLoss",
    "WassersteinDiscriminatorLoss",
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


def _fakes_for_step(generator, batch_size: int, device, labels, *, grad: bool = True):
    """G's images for a training step and the labels they are judged with: the batch's
    labels, or random ones where G draws its own (``label_type="generated"``).
    ``grad=False``: no autograd graph through G (D's step does not differentiate G)."""
    if labels is None and generator.label_type == "required":
        raise ValueError("this generator needs class labels: train it on a dataset that yields (images, labels)")
    noise = torch.randn(batch_size, generator.encoding_dims, device=device)
    if generator.label_type == "generated":
        labels = torch.randint(0, generator.num_classes, (batch_size,), device=device)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        fake = generator(noise) if generator.label_type == "none" else generator(noise, labels)
    return fake, labels


def _discriminator_logits(discriminator, images: torch.Tensor, labels) -> torch.Tensor:
    return discriminator(images) if discriminator.label_type == "none" else discriminator(images, labels)


def _check_scalar(loss) -> None:
    check_scalar_reduction(type(loss).__name__, loss.reduction)


def _generator_step(self, generator, discriminator, optimizer_generator, device, batch_size, labels=None):
    """The generator's training step (torchgan's ``GeneratorLoss.train_ops``, same
    signature and order of operations) returning the loss as a detached device scalar
    rather than reading it back with ``.item()``: no host sync (see
    :mod:`torchgan_sagan.trainer.deferred_logging`). With ``freeze_discriminator`` D's weights
    get no gradients: only G is updated here, and D's weight gradients would be thrown
    away (and, under DDP, all-reduced first); the step sees the net inside a DDP
    wrapper, with its parameters frozen for the step."""
    if self.override_train_ops is not None:
        return self.override_train_ops(generator, discriminator, optimizer_generator, device, batch_size, labels)
    _check_scalar(self)
    net = discriminator.module if isinstance(discriminator, DistributedDataParallel) else discriminator
    frozen = [p for p in net.parameters() if p.requires_grad] if self.freeze_discriminator else []
    for p in frozen:
        p.requires_grad_(False)
    try:
        optimizer_generator.zero_grad()
        fake, fake_labels = _fakes_for_step(generator, batch_size, device, labels)
        loss = self(_discriminator_logits(discriminator, fake, fake_labels))
        loss.backward()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    optimizer_generator.step()
    return loss.detach()


def _discriminator_step(self, generator, discriminator, optimizer_discriminator, real_inputs, device, labels=None):
    """The discriminator's training step (torchgan's ``DiscriminatorLoss.train_ops``,
    same signature), returning the loss as a detached device scalar. G's images are
    made without an autograd graph (torchgan builds one, then detaches), and D's
    spectrally normalized weights are computed once for its two calls (real, fake),
    with one power iteration, where torchgan's step computes them twice: on a GPU,
    where a step of these small nets is bound by kernel launches, that matters."""
    if self.override_train_ops is not None:
        return self.override_train_ops(self, generator, discriminator, optimizer_discriminator, real_inputs,
                                       device, labels)
    _check_scalar(self)
    if labels is None and discriminator.label_type == "required":
        raise ValueError("this discriminator needs class labels: train it on a dataset that yields (images, labels)")
    optimizer_discriminator.zero_grad()
    fake, fake_labels = _fakes_for_step(generator, real_inputs.size(0), device, labels, grad=False)
    with parametrize.cached():
        loss = self(_discriminator_logits(discriminator, real_inputs, labels), _discriminator_logits(discriminator, fake, fake_labels))
    loss.backward()
    optimizer_discriminator.step()
    return loss.detach()


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

    train_ops = _generator_step


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

    train_ops = _discriminator_step


class LeastSquaresGeneratorLoss(_TorchganLeastSquaresGeneratorLoss):
    r"""Least-squares loss for the generator, :math:`L_G = \tfrac12\mathbb{E}_z[(D(G(z)) - c)^2]`
    with ``c = 1``.

    torchgan's ``LeastSquaresGeneratorLoss`` (same loss, same arguments) with this
    package's training step: the loss stays on the device (torchgan's step reads it
    back with ``.item()``, a host sync every iteration on a GPU) and D's weights get no
    gradients (``freeze_discriminator``, on by default). ``reduction`` is ``"mean"``
    (default), ``"sum"`` or ``"none"`` (``"none"`` only outside the Trainer).
    """

    def __init__(self, reduction: str = "mean", c: float = 1.0, override_train_ops=None, *,
                 freeze_discriminator: bool = True) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), c, override_train_ops)
        self.freeze_discriminator = freeze_discriminator

    train_ops = _generator_step


class LeastSquaresDiscriminatorLoss(_TorchganLeastSquaresDiscriminatorLoss):
    r"""Least-squares loss for the discriminator,
    :math:`L_D = \tfrac12\mathbb{E}[(D(x) - b)^2] + \tfrac12\mathbb{E}[(D(G(z)) - a)^2]`
    with ``a = 0`` (fake) and ``b = 1`` (real).

    torchgan's ``LeastSquaresDiscriminatorLoss`` (same loss, same arguments) with this
    package's training step: the loss stays on the device, G's images are made without
    an autograd graph and D's spectrally normalized weights are computed once for its
    real and fake batches. ``reduction`` is ``"mean"`` (default), ``"sum"`` or
    ``"none"`` (``"none"`` only outside the Trainer).
    """

    def __init__(self, reduction: str = "mean", a: float = 0.0, b: float = 1.0, override_train_ops=None) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), a, b, override_train_ops)

    train_ops = _discriminator_step


class WassersteinGeneratorLoss(_TorchganWassersteinGeneratorLoss):
    r"""Wasserstein loss for the generator, :math:`L_G = -\mathbb{E}_z[D(G(z))]`: torchgan's
    ``WassersteinGeneratorLoss`` with this package's training step (the loss stays on the
    device; D's weights get no gradients, ``freeze_discriminator``)."""

    def __init__(self, reduction: str = "mean", override_train_ops=None, *,
                 freeze_discriminator: bool = True) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), override_train_ops)
        self.freeze_discriminator = freeze_discriminator

    train_ops = _generator_step


class WassersteinDiscriminatorLoss(_TorchganWassersteinDiscriminatorLoss):
    r"""Wasserstein loss for the discriminator, :math:`L_D = \mathbb{E}_z[D(G(z))] - \mathbb{E}_x[D(x)]`:
    torchgan's ``WassersteinDiscriminatorLoss`` with this package's training step. With
    ``clip=(low, high)`` every weight of D is clamped to it before each step, as
    torchgan's step does (in one call for all weights)."""

    def __init__(self, reduction: str = "mean", clip=None, override_train_ops=None) -> None:
        super().__init__(check_choice("reduction", reduction, REDUCTIONS), clip, override_train_ops)

    def train_ops(self, generator, discriminator, optimizer_discriminator, real_inputs, device, labels=None):
        if self.clip is not None and self.override_train_ops is None:
            weights = list(discriminator.parameters())
            with torch.no_grad():
                torch._foreach_clamp_min_(weights, self.clip[0])
                torch._foreach_clamp_max_(weights, self.clip[1])
        return _discriminator_step(self, generator, discriminator, optimizer_discriminator, real_inputs, device,
                                   labels)


# Trainer checkpoints pickle the loss objects.
for _loss in (HingeGeneratorLoss, HingeDiscriminatorLoss, LeastSquaresGeneratorLoss, LeastSquaresDiscriminatorLoss,
              WassersteinGeneratorLoss, WassersteinDiscriminatorLoss):
    register_checkpoint_class(_loss)
