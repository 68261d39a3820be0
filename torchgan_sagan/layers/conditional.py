"""Class-conditional BatchNorm, and the containers that hand labels to the layers
that take them."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..checks import check_positive_int

__all__ = ["ConditionalBatchNorm2d", "ConditionalSequential", "run_layer"]


class ConditionalBatchNorm2d(nn.Module):
    r"""BatchNorm whose scale and shift depend on the class: conditional BatchNorm.

    Used by the class-conditional SAGAN generator (the paper's ImageNet model, after
    de Vries et al. 2017 and Miyato & Koyama 2018). The features are normalized with
    shared batch statistics, then

    .. math:: y = \gamma_{c} \odot \hat{x} + \beta_{c}

    with one gain and one bias vector per class ``c``, starting at 1 and 0 (so at
    initialization the layer is a plain BatchNorm). The per-class tables are plain
    parameters, not spectrally normalized.

    Args:
        num_features: channels C of the input (B, C, H, W).
        num_classes: number of classes; labels are integers in ``[0, num_classes)``.
    """

    takes_labels = True

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_features = check_positive_int("num_features", num_features)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Parameter(torch.ones(num_classes, num_features))
        self.bias = nn.Parameter(torch.zeros(num_classes, num_features))

    def reset_parameters(self) -> None:
        self.bn.reset_running_stats()
        with torch.no_grad():
            self.gain.fill_(1.0)
            self.bias.zero_()

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_classes={self.num_classes}"

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)  # (B, C, H, W)
        gain = self.gain[labels][:, :, None, None].to(h.dtype)  # (B, C, 1, 1), in the activations' dtype
        bias = self.bias[labels][:, :, None, None].to(h.dtype)  # (B, C, 1, 1)
        return h * gain + bias


def run_layer(layer: nn.Module, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """Run one layer: a layer with ``takes_labels`` (conditional BatchNorm, residual
    blocks) gets the labels too, any other only ``x``."""
    return layer(x, labels) if getattr(layer, "takes_labels", False) else layer(x)


class ConditionalSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``labels`` to its layers with ``takes_labels``
    (:func:`run_layer`): ``forward(x, labels)``."""

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self:
            x = run_layer(layer, x, labels)
        return x
