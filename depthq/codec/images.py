"""Reading image files for the codec: exact 8-bit pixels, or a one-line refusal.

``read_image(path, channels)`` returns uint8 (C, H, W) for a codec of C = 1 (greyscale) or 3
(RGB) channels. The codec is lossless, so a file is converted only where the conversion keeps
every pixel value; everything else is refused with one line (a ``DataError``) that says why.

Rules, by Pillow mode:

- ``RGB``: as is; for a greyscale codec only when R = G = B everywhere (refused otherwise).
  16-bit-per-channel RGB (which Pillow reads as its high bytes only) is refused.
- ``L``: as is; for an RGB codec replicated to R = G = B (the decoded PNG is RGB, same values).
- ``1`` (1-bit): converted to ``L`` with values 0 and 255.
- ``P`` (palette): converted to RGB through the palette (then the RGB rules); with transparency
  as ``RGBA``.
- ``RGBA``, ``LA``, ``PA``, ``RGBX``, or a ``transparency`` entry: the alpha (padding) channel is
  dropped when fully opaque (255 everywhere); alpha that is not fully opaque is refused, since
  the codec does not store it. Premultiplied ``RGBa`` / ``La`` are refused.
- ``I;16``, ``I;16L``, ``I;16B``, ``I`` (16- or 32-bit integers): reduced to 8 bits only when
  every value is a multiple of 257 (8-bit data stored in 16 bits: v = 257 * v8), else refused.
- ``F`` (floats), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and anything else: refused (their
  conversion to RGB is not exact); convert to 8-bit RGB or greyscale first.
- Files of several frames (animations, multi-page TIFF) are refused. EXIF orientation is not
  applied: the stored pixel array is coded as it is.

The pixel count is checked against ``max_pixels`` before the pixels are decoded (Pillow's own
decompression-bomb limit, ``Image.MAX_IMAGE_PIXELS``, applies as well).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from depthq.codec.format import DEFAULT_MAX_PIXELS, CodecError, Limits
from depthq.errors import DataError

log = logging.getLogger(__name__)

_ALPHA = {"RGBA": "RGB", "LA": "L", "PA": "RGBA", "RGBX": "RGB"}
_INTEGER = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_DIRECT = ("RGB", "L")


def _is_16_bit_rgb(image: Image.Image) -> bool:
    """Whether Pillow reads this RGB file from 16-bit samples (keeping their high bytes)."""
    tiles = getattr(image, "tile", None) or []
    return any(";16" in str(t[3] if len(t) > 3 else "") for t in tiles)


def pixels(image: Image.Image, channels: int, name: str = "the image") -> Tensor:
    """A loaded Pillow image -> uint8 (C, H, W) by the module's rules, or DataError."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = image.mode
    if mode in ("RGBa", "La"):
        raise DataError(f"{name} has premultiplied alpha ({mode}), which the codec does not store")
    if mode == "1":
        image, mode = image.convert("L"), "L"
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif "transparency" in image.info and mode in _DIRECT:
        image = image.convert("LA" if mode == "L" else "RGBA")
        mode = image.mode
    if mode in _ALPHA:
        if mode == "PA":
            image, mode = image.convert("RGBA"), "RGBA"
        array = np.asarray(image)
        if mode != "RGBX" and (array[..., -1] != 255).any():
            raise DataError(f"{name} has transparency ({mode} with alpha below 255), which the codec does not store")
        array = array[..., :-1] if array.shape[-1] > 2 else array[..., 0]
    elif mode in _INTEGER:
        wide = np.asarray(image).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 65535 or (wide % 257).any()):
            raise DataError(
                f"{name} has {mode} pixels with more than 8 bits of precision: the codec stores 8-bit "
                "images exactly (reduce it to 8 bits first)"
            )
        array = (wide // 257).astype(np.uint8)
    elif mode in _DIRECT:
        if mode == "RGB" and _is_16_bit_rgb(image):
            raise DataError(f"{name} has 16 bits per channel: the codec stores 8-bit images (reduce it first)")
        array = np.asarray(image)
    else:
        raise DataError(
            f"{name} has {mode} pixels, which do not convert exactly to 8-bit RGB or greyscale: convert it first"
        )
    array = np.ascontiguousarray(array, dtype=np.uint8)
    array = array[..., None] if array.ndim == 2 else array  # (H, W, c)
    if channels == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels == 1 and array.shape[2] == 3:
        if not ((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()):
            raise DataError(f"{name} is in colour, and this model codes greyscale images")
        array = array[..., :1]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def read_image(path: str | os.PathLike, channels: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """An image file -> uint8 (C, H, W) for a codec of ``channels`` channels, by the module's
    rules; DataError (one line, naming the file) for what the codec would not keep exactly."""
    path = Path(path)
    limits = Limits(max_pixels)
    if not path.is_file():
        raise DataError(f"{path} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(path) as image:
                width, height = image.size
                try:
                    limits.check_pixels(height, width, str(path))
                except CodecError as err:
                    raise DataError(str(err)) from None
                if getattr(image, "n_frames", 1) > 1:
                    raise DataError(f"{path} has {image.n_frames} frames: the codec codes one image per file")
                image.load()
                return pixels(image, channels, str(path))
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: {err}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot read {path} as an image: {err}") from None
