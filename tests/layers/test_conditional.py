import torch
import torch.nn as nn

from torchgan_sagan.layers import ConditionalBatchNorm2d, ConditionalSequential, apply_spectral_norm, spectral_norm_of


def test_conditional_batchnorm_starts_as_batchnorm_and_conditions_per_class():
    x = torch.randn(6, 4, 3, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cbn = ConditionalBatchNorm2d(4, 3)
    plain = nn.BatchNorm2d(4, affine=False)
    assert torch.allclose(cbn(x, labels), plain(x), atol=1e-6)
    with torch.no_grad():
        cbn.gain[1] = 2.0
        cbn.bias[2] = -1.0
    y, normed = cbn(x, labels), plain(x)
    assert torch.allclose(y[labels == 0], normed[labels == 0], atol=1e-6)
    assert torch.allclose(y[labels == 1], 2 * normed[labels == 1], atol=1e-6)
    assert torch.allclose(y[labels == 2], normed[labels == 2] - 1, atol=1e-6)


def test_conditional_sequential_hands_labels_to_conditional_layers_only():
    seq = ConditionalSequential(nn.Conv2d(2, 4, 1), ConditionalBatchNorm2d(4, 5), nn.ReLU())
    with torch.no_grad():
        seq[1].bias[4] = 10.0
    out = seq(torch.randn(3, 2, 2, 2), torch.tensor([4, 4, 0]))
    assert (out[:2] > 5).all() and (out[2] < 5).all()
    assert ConditionalSequential(nn.ReLU())(torch.tensor([-1.0])).item() == 0.0  # no labels needed


def test_conditional_batchnorm_tables_are_not_spectrally_normalized():
    net = apply_spectral_norm(ConditionalSequential(nn.Conv2d(2, 4, 1), ConditionalBatchNorm2d(4, 5)))
    assert spectral_norm_of(net[0]) is not None
    assert {n for n, _ in net[1].named_parameters()} == {"gain", "bias"}
