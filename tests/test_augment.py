import pytest
import torch

from torchgan_sagan.augment import AUGMENTATIONS, DiffAugment, color, cutout, diff_augment, parse_policy, translation


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_transformation_is_differentiable(name):
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    y = AUGMENTATIONS[name](x)
    assert y.shape == x.shape
    (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_gradient_matches_finite_differences(name):
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def fixed_draw(inp):
        torch.manual_seed(1)  # the same random transformation for every evaluation
        return AUGMENTATIONS[name](inp)

    assert torch.autograd.gradcheck(fixed_draw, (x,))


def test_translation_moves_content_and_fills_zeros():
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    y = translation(x)
    shifted = 0
    for img in y[:, 0]:
        inside = img[img > 0]
        # Every surviving pixel is an original one; rows and columns keep their order.
        assert set(inside.tolist()) <= set(range(1, 65))
        assert torch.all(img[img > 0].diff() > 0) or inside.numel() <= 1
        shifted += int(not torch.equal(img, x[0, 0]))
    assert shifted > 0


def test_cutout_zeros_a_square_of_a_quarter_of_the_image_at_most():
    x = torch.ones(32, 2, 8, 8)
    y = cutout(x)
    zeros = (y[:, 0] == 0).sum(dim=(1, 2))
    assert torch.all(zeros <= 16) and torch.all(zeros >= 4)  # a 4x4 square, clipped at the edges
    assert torch.equal(y[:, 0], y[:, 1])  # the same square in every channel
    assert zeros.max() == 16


def test_color_changes_brightness_and_contrast_per_image():
    x = torch.rand(16, 3, 8, 8)
    y = color(x)
    assert not torch.allclose(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    assert y.mean(dim=(1, 2, 3)).std() > 0


def test_layer_is_identity_in_eval_mode_or_without_a_policy():
    x = torch.rand(4, 3, 16, 16)
    layer = DiffAugment("color,translation,cutout")
    assert not torch.equal(layer(x), x)
    assert layer.eval()(x) is x
    assert DiffAugment(None)(x) is x
    assert DiffAugment("")(x) is x


def test_policy_parsing():
    assert parse_policy(None) == ()
    assert parse_policy("cutout, color") == ("color", "cutout")  # applied in a fixed order
    with pytest.raises(ValueError, match="unknown DiffAugment transformation.*'flip'.*color, translation, cutout"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="comma-separated string"):
        parse_policy(["color"])
    torch.manual_seed(3)
    a = diff_augment(torch.ones(2, 1, 8, 8), "cutout")
    assert (a == 0).any()
