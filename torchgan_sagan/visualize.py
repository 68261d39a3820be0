"""Pictures of what a SAGAN learned: sample grids and attention maps.

Figures use matplotlib, imported when a figure is drawn (it comes with the
``[examples]`` extra).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.utils import make_grid

from .metrics.memorization import match_training_images

__all__ = ["image_grid", "nearest_grid", "default_queries", "attention_maps_of", "attention_grid",
           "attention_figure", "side_by_side_figure", "rows_of_grids_figure", "real_vs_fake_figure"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "figures need matplotlib: python -m pip install matplotlib "
            "(or install this package with the [examples] extra)"
        ) from err
    return plt


def image_grid(images: torch.Tensor, nrow: Optional[int] = None) -> torch.Tensor:
    """Images in [-1, 1], (B, C, H, W) -> one (3, H', W') grid in [0, 1]."""
    nrow = nrow or max(1, int(len(images) ** 0.5))
    return make_grid(images.detach().cpu().float(), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2, pad_value=1.0)


def nearest_grid(samples: torch.Tensor, training: torch.Tensor, indices, count: int = 8) -> torch.Tensor:
    """The first ``count`` samples in a row over their nearest training images
    (``indices``, as :func:`~torchgan_sagan.metrics.memorization.memorization_report` gives
    them): one (3, H', W') grid in [0, 1]."""
    count = min(count, len(samples))
    nearest = match_training_images(training[torch.as_tensor(list(indices[:count]))], samples)
    return image_grid(torch.cat([samples[:count], nearest]), nrow=count)


def _to_numpy_image(image: torch.Tensor):
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1]."""
    image = ((image.detach().cpu().float() + 1) / 2).clamp(0, 1)
    if image.size(0) == 1:
        return image[0].numpy()
    return image.permute(1, 2, 0).numpy()


def default_queries(size: int) -> Sequence[Tuple[int, int]]:
    """Four query pixels (row, col): centre-left, centre-right, top, bottom."""
    return [
        (size // 2, size // 4),
        (size // 2, 3 * size // 4),
        (size // 4, size // 2),
        (3 * size // 4, size // 2),
    ]


@torch.no_grad()
def attention_maps_of(generator: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor] = None, *,
                      resolution: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Generate from ``z`` (and ``labels``) in eval mode; return the images, the map of
    the attention block at ``resolution`` (default: the largest), (B, N, N_k), and that
    resolution."""
    was_training = generator.training
    generator.eval()
    try:
        images, maps = generator.attention_maps(z, labels)
    finally:
        generator.train(was_training)
    if not maps:
        raise ValueError("the generator has no attention block (attn_resolutions is empty)")
    resolution = resolution or max(maps)
    if resolution not in maps:
        raise ValueError(f"no attention block at {resolution}; the generator has {sorted(maps)}")
    return images, maps[resolution], resolution


def _heat(attn: torch.Tensor, row: int, query: Tuple[int, int], resolution: int, size: int) -> torch.Tensor:
    """Where ``query`` (a pixel of the ``size`` x ``size`` image) attends, upsampled to
    the image: (size, size), summing to 1 before upsampling."""
    y, x = query
    keys_side = int(round(attn.size(-1) ** 0.5))
    q = (y * resolution // size) * resolution + (x * resolution // size)
    heat = attn[row, q].float().view(1, 1, keys_side, keys_side)
    return F.interpolate(heat, size=(size, size), mode="nearest")[0, 0]


@torch.no_grad()
def attention_grid(generator: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor] = None, *,
                   resolution: Optional[int] = None,
                   queries: Optional[Sequence[Tuple[int, int]]] = None) -> torch.Tensor:
    """The attention maps as one image tensor (3, H', W') in [0, 1], for TensorBoard:
    a row per noise vector, the generated image and then, per query pixel, the image
    in gray with its attention map in red."""
    images, attn, resolution = attention_maps_of(generator, z, labels, resolution=resolution)
    size = images.size(-1)
    gray = ((images.float().cpu().mean(1, keepdim=True) + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
    tiles = []
    for row in range(len(images)):
        tiles.append(gray[row] if images.size(1) == 1 else ((images[row].float().cpu() + 1) / 2).clamp(0, 1))
        for query in queries or default_queries(size):
            heat = _heat(attn.cpu(), row, query, resolution, size)
            heat = heat / heat.max().clamp_min(1e-12)
            tile = 0.6 * gray[row].clone()
            tile[0] += 0.4 * heat
            tiles.append(tile.clamp(0, 1))
    return make_grid(torch.stack(tiles), nrow=len(tiles) // len(images), padding=2, pad_value=1.0)


@torch.no_grad()
def attention_figure(
    generator: nn.Module,
    z: torch.Tensor,
    path: str | os.PathLike,
    *,
    labels: Optional[torch.Tensor] = None,
    resolution: Optional[int] = None,
    queries: Optional[Sequence[Tuple[int, int]]] = None,
):
    """Save a figure of where query pixels attend, as in the SAGAN paper's Figure 1.

    One row per noise vector in ``z`` (and class in ``labels``, for a conditional
    generator): the generated image with the query pixels marked, then, per query,
    the attention map of the block at ``resolution`` (default: the largest one)
    upsampled to the image and laid over it.
    """
    plt = _pyplot()
    images, attn, resolution = attention_maps_of(generator, z, labels, resolution=resolution)
    size = images.size(-1)
    queries = list(queries or default_queries(size))
    cols = len(queries) + 1
    fig, axes = plt.subplots(len(images), cols, figsize=(2.2 * cols, 2.2 * len(images)), squeeze=False)
    colors = plt.cm.tab10.colors
    for row, image in enumerate(images):
        picture = _to_numpy_image(image)
        cmap = "gray" if picture.ndim == 2 else None
        axes[row, 0].imshow(picture, cmap=cmap, vmin=0, vmax=1)
        axes[row, 0].set_title("generated" if row == 0 else "")
        for j, (y, x) in enumerate(queries):
            axes[row, 0].scatter([x], [y], s=40, c=[colors[j % 10]], edgecolors="white")
            heat = _heat(attn, row, (y, x), resolution, size)
            ax = axes[row, j + 1]
            ax.imshow(picture, cmap=cmap, vmin=0, vmax=1)
            ax.imshow(heat.cpu().numpy(), cmap="inferno", alpha=0.6)
            ax.scatter([x], [y], s=40, c=[colors[j % 10]], edgecolors="white")
            if row == 0:
                ax.set_title(f"query {j + 1}")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"attention at {resolution}x{resolution} features (rows sum to 1 over keys)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def side_by_side_figure(panels: Sequence[Tuple[str, torch.Tensor]], path: str | os.PathLike) -> None:
    """Save image grids side by side, each under its title: ``panels`` is a sequence of
    ``(title, images)`` with images (B, C, H, W) in [-1, 1]."""
    if not panels:
        raise ValueError("side_by_side_figure needs at least one (title, images) panel")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, images) in zip(axes[0], panels):
        ax.imshow(image_grid(images).permute(1, 2, 0).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def rows_of_grids_figure(rows: Sequence[Tuple[str, Sequence[Tuple[str, torch.Tensor]]]],
                         path: str | os.PathLike, *, cell: float = 2.5) -> None:
    """Save image grids in rows, e.g. two nets (rows) at a few points of training
    (columns): ``rows`` is a sequence of ``(row title, [(column title, images), ...])``
    with images (B, C, H, W) in [-1, 1]; every row has the same number of columns."""
    if not rows or not rows[0][1] or len({len(cells) for _, cells in rows}) != 1:
        raise ValueError("rows_of_grids_figure needs rows of (title, images) cells, the same number in each row")
    plt = _pyplot()
    n_rows, n_cols = len(rows), len(rows[0][1])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows + 0.3), squeeze=False)
    for i, (row_title, cells) in enumerate(rows):
        for j, (title, images) in enumerate(cells):
            ax = axes[i][j]
            ax.imshow(image_grid(images).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(row_title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def real_vs_fake_figure(real: torch.Tensor, fake: torch.Tensor, path: str | os.PathLike) -> None:
    """Save real and generated images side by side (both (B, C, H, W) in [-1, 1])."""
    side_by_side_figure([("real", real), ("generated", fake)], path)
