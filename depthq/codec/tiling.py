"""Images of any size as tiles of the prior's image size, and the fixed batches they run in.

An image (C, H, W) is padded to (C, ceil(H/t)*t, ceil(W/t)*t) by edge replication (the last row
and column repeated, as CompressAI pads to its networks' stride, here with the image's own edge
pixels so the padding costs few bits), then cut row-major into t x t tiles. The padding lies
inside the last row and column of tiles, so every padded pixel copies a pixel of its own tile.

``chunks(n)``: the fixed-size batches a codec runs n tiles in. Full chunks of ``size`` tiles, then
one chunk of the smallest power of two that holds the rest: every batch shape is a function of
n (read from a file's header) alone, so encoder and decoder compute at the same shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """Tile rows and columns of an image: (ceil(H/t), ceil(W/t))."""
    return -(-height // tile), -(-width // tile)


def pad(x: Tensor, tile: int) -> Tensor:
    """(..., H, W) -> (..., ceil(H/t)*t, ceil(W/t)*t), edge-replicated (any dtype)."""
    h, w = x.shape[-2:]
    rows, cols = grid(h, w, tile)
    if (rows * tile, cols * tile) == (h, w):
        return x
    ih = torch.arange(rows * tile).clamp_(max=h - 1)
    iw = torch.arange(cols * tile).clamp_(max=w - 1)
    return x[..., ih, :][..., iw]


def tiles(x: Tensor, tile: int) -> Tensor:
    """(C, H, W) or (N, C, H, W) with sides multiples of ``tile`` -> (n, C, t, t) tiles, row-major
    within each image (``pad`` first for other sides)."""
    x = x if x.dim() == 4 else x[None]
    n, c, h, w = x.shape
    if h % tile or w % tile:
        raise ValueError(f"tiles: sides {h}x{w} must be multiples of {tile} (pad the image first)")
    return x.reshape(n, c, h // tile, tile, w // tile, tile).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, tile, tile)


def real_mask(height: int, width: int, tile: int) -> Tensor:
    """(n, t, t) bool: True where a tile's pixel lies inside the image (False on the padding)."""
    rows, cols = grid(height, width, tile)
    inside = torch.zeros(rows * tile, cols * tile, dtype=torch.bool)
    inside[:height, :width] = True
    return tiles(inside[None], tile)[:, 0]


class Chunk(NamedTuple):
    """Tiles [start, stop) of an image, computed in a batch of ``size`` rows (the rest padding)."""

    start: int
    stop: int
    size: int

    @property
    def real(self) -> int:
        return self.stop - self.start


def chunks(n: int, size: int) -> list[Chunk]:
    """The batches for n tiles: full chunks of ``size`` (a power of two), then the rest in the
    smallest power of two that holds it."""
    if size < 1 or size & (size - 1):
        raise ValueError(f"the chunk size must be a power of two, got {size}")
    out = [Chunk(start, start + size, size) for start in range(0, n - n % size, size)]
    rest = n % size
    if rest:
        out.append(Chunk(n - rest, n, 1 << (rest - 1).bit_length()))
    return out


def place(out: Tensor, parts: Tensor, first: int, tile: int) -> None:
    """Write tiles ``parts`` (k, C, t, t), tile indices first..first+k-1 of ``out``'s grid, into
    the (C, H, W) image ``out``, cropping the padding."""
    c, h, w = out.shape
    cols = grid(h, w, tile)[1]
    for i, part in enumerate(parts):
        row, col = divmod(first + i, cols)
        top, left = row * tile, col * tile
        hh, ww = min(tile, h - top), min(tile, w - left)
        out[:, top : top + hh, left : left + ww] = part[:, :hh, :ww]
