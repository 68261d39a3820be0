import pytest
import torch
from PIL import Image

from torchgan_sagan import SAGANGenerator
from torchgan_sagan.visualize import (attention_figure, default_queries, image_grid, real_vs_fake_figure,
                                      side_by_side_figure)


def test_image_grid_shape_and_range():
    grid = image_grid(torch.rand(4, 1, 8, 8) * 2 - 1)
    assert grid.shape == (3, 2 * 8 + 3 * 2, 2 * 8 + 3 * 2)
    assert grid.min() >= 0 and grid.max() <= 1


def test_attention_figure_is_written(tmp_path):
    g = SAGANGenerator(8, 32, 1, 8, attn_resolutions=(8, 16))
    g.train()
    attention_figure(g, torch.randn(2, 8), tmp_path / "attn.png")
    with Image.open(tmp_path / "attn.png") as im:
        assert im.size[0] > 400 and im.size[1] > 200
    assert g.training  # the figure leaves the mode as it found it
    with pytest.raises(ValueError, match=r"no attention block at 4; the generator has \[8, 16\]"):
        attention_figure(g, torch.randn(1, 8), tmp_path / "x.png", resolution=4)


def test_attention_figure_needs_an_attention_block(tmp_path):
    g = SAGANGenerator(8, 16, 1, 8, attn_resolutions=())
    with pytest.raises(ValueError, match="no attention block"):
        attention_figure(g, torch.randn(1, 8), tmp_path / "attn.png")


def test_default_queries_lie_inside_the_image():
    for size in (16, 64):
        assert all(0 <= y < size and 0 <= x < size for y, x in default_queries(size))


def test_real_vs_fake_figure(tmp_path):
    real_vs_fake_figure(torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1, tmp_path / "rf.png")
    assert (tmp_path / "rf.png").stat().st_size > 0


def test_side_by_side_figure_needs_a_panel(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        side_by_side_figure([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_rows_of_grids_figure(tmp_path):
    from torchgan_sagan.visualize import rows_of_grids_figure

    images = torch.rand(4, 1, 8, 8) * 2 - 1
    rows_of_grids_figure([("a", [("1", images), ("2", images)]), ("b", [("1", images), ("2", images)])],
                         tmp_path / "rows.png")
    assert (tmp_path / "rows.png").stat().st_size > 0
    with pytest.raises(ValueError, match="the same number in each row"):
        rows_of_grids_figure([("a", [("1", images)]), ("b", [])], tmp_path / "bad.png")
