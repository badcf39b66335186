"""Image grids as PNG, in plain torch and Pillow (no torchvision)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from depthq.atomic import atomic_write


def make_grid(rows: Sequence[Tensor], pad: int = 2, scale: int = 1) -> Tensor:
    """Stack uint8 image batches as rows of a grid: [(N, C, H, W), ...] -> (H', W', 3) uint8.

    Every row must have the same image size; rows with fewer images are padded with
    background. Greyscale images are shown as RGB. ``scale`` enlarges each pixel (nearest).
    """
    if not rows:
        raise ValueError("make_grid needs at least one row of images")
    shapes = {tuple(r.shape[1:]) for r in rows}
    if len(shapes) != 1:
        raise ValueError(f"all rows must hold images of one shape (C, H, W), got {sorted(shapes)}")
    for r in rows:
        if r.dtype != torch.uint8 or r.dim() != 4:
            raise ValueError(f"expected uint8 rows (N, C, H, W), got {r.dtype} {tuple(r.shape)}")
    c, h, w = rows[0].shape[1:]
    cols = max(r.shape[0] for r in rows)
    grid = torch.full((3, pad + len(rows) * (h + pad), pad + cols * (w + pad)), 255, dtype=torch.uint8)
    for i, row in enumerate(rows):
        row = row.detach().cpu()
        if c == 1:
            row = row.expand(-1, 3, -1, -1)
        for j, image in enumerate(row[:, :3]):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, top : top + h, left : left + w] = image
    grid = grid.permute(1, 2, 0)  # (H', W', 3)
    if scale > 1:
        grid = grid.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return grid.contiguous()


def save_png(image: Tensor, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 tensor as a PNG, atomically."""
    array = image.detach().cpu().numpy()
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def save_reconstructions(originals: Tensor, reconstructions: Tensor, path: str | os.PathLike, scale: int = 2) -> Path:
    """Originals above their reconstructions, as one PNG."""
    return save_png(make_grid([originals, reconstructions], scale=scale), path)
