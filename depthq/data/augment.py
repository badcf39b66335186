"""Training-time augmentation of uint8 batches in plain torch: random flips and random crops.

Off by default: a likelihood model is evaluated on the data as it is, and augmentation changes the
distribution it is fit to. Never applied to val or test batches. Pixels stay uint8 and are only
moved, never interpolated, so every output value is an input value (or 0 for zero padding).

The randomness is drawn on the CPU from a seeded generator (``draw_augmentation``) and applied
where the pixels are (``apply_augmentation``), so a batch built on a GPU equals the CPU's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from depthq.errors import DataError

PADDING_MODES = ("reflect", "zeros")


def _reflect(index: Tensor, size: int) -> Tensor:
    """Map indices in [-size+1, 2*size-2] into [0, size) by reflection without repeating the edge."""
    index = index.abs()  # -k -> k
    return torch.where(index >= size, 2 * (size - 1) - index, index)


class AugmentDraw(NamedTuple):
    """The randomness of one batch's augmentation, drawn before any pixel is read."""

    flips: Tensor  # bool (B,): mirror image n left-right
    shifts: Tensor  # int64 (2, B): (dy, dx) of image n's crop window, in [-padding, padding]


def draw_augmentation(
    b: int, *, flip: bool, crop_padding: int, generator: torch.Generator | None = None
) -> AugmentDraw:
    """Draw the flips and crop shifts of ``b`` images, in a fixed order (see ``augment``)."""
    flips = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    shifts = torch.randint(-crop_padding, crop_padding + 1, (2, b), generator=generator)
    return AugmentDraw(flips, shifts)


def augment(
    batch: Tensor,
    *,
    flip: bool,
    crop_padding: int,
    generator: torch.Generator | None = None,
    padding_mode: str = "reflect",
) -> Tensor:
    """Randomly flip and crop each image of ``batch`` independently.

    Args:
        batch: uint8 (B, C, H, W).
        flip: mirror each image left-right with probability 1/2.
        crop_padding: pad each side by this many pixels and cut a random H x W window, i.e. shift
            each image by up to ``crop_padding`` pixels in each direction (0: no crop).
        generator: the source of randomness; seed it for a reproducible batch.
        padding_mode: "reflect" (mirror without repeating the edge, as ``F.pad(mode="reflect")``)
            or "zeros".

    Returns:
        uint8 (B, C, H, W), a new tensor.
    """
    _check(batch, crop_padding, padding_mode)
    # Draw all randomness first, in a fixed order, so results depend only on the generator state.
    draw = draw_augmentation(batch.shape[0], flip=flip, crop_padding=crop_padding, generator=generator)
    if crop_padding == 0 and not flip:
        return batch.clone()
    return apply_augmentation(batch, draw, padding_mode=padding_mode)


def _check(batch: Tensor, crop_padding: int, padding_mode: str) -> None:
    if batch.ndim != 4:
        raise DataError(f"augment expects a batch (B, C, H, W); got shape {tuple(batch.shape)}")
    if padding_mode not in PADDING_MODES:
        raise DataError(f"padding_mode must be one of {PADDING_MODES}; got {padding_mode!r}")
    _, _, h, w = batch.shape
    if not 0 <= crop_padding < min(h, w):
        raise DataError(f"crop_padding must be in [0, {min(h, w)}) for {h}x{w} images; got {crop_padding}")


def apply_augmentation(batch: Tensor, draw: AugmentDraw, *, padding_mode: str = "reflect") -> Tensor:
    """Flip and shift each image of ``batch`` as ``draw`` (from ``draw_augmentation`` with a
    padding below H and W) says, on the batch's device; the draw is moved there. Nothing is read
    on the host. uint8 (B, C, H, W) -> uint8 (B, C, H, W), a new tensor."""
    _check(batch, 0, padding_mode)
    b, _, h, w = batch.shape
    flips, shifts = draw.flips.to(batch.device), draw.shifts.to(batch.device)
    # flip(crop(pad(x))): output pixel (i, j) of image n reads the padded input at row i + dy_n and
    # column j' + dx_n, where j' = W - 1 - j if image n is flipped, else j.
    rows = torch.arange(h, device=batch.device)[None, :] + shifts[0][:, None]  # (B, H)
    cols = torch.arange(w, device=batch.device)[None, :].expand(b, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + shifts[1][:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    rows, cols = _reflect(rows, h), _reflect(cols, w)
    n = torch.arange(b, device=batch.device)[:, None, None]
    out = batch.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    if padding_mode == "zeros":
        out = out * inside[..., None]
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
