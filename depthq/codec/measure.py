"""Measured file sizes: the codec's files against the model's ideal code length and Pillow's codecs.

``measure(model, prior, images)`` compresses every image to a real file both ways (lossless and
lossy), decompresses every file, checks each lossless round trip bit for bit, and returns a
``CodecMeasurement``. ``pillow_bits_per_dim`` measures PNG and WebP-lossless on the same images,
one file per image, for the comparison table.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from depthq.codec.coder import CODER_THREADS, Codec, prior_tile
from depthq.codec.format import HEADER_BYTES
from depthq.codec.tiling import pad, real_mask, tiles
from depthq.errors import SchemaError
from depthq.evaluate.bits import EmpiricalPrior
from depthq.evaluate.evaluator import psnr
from depthq.prior.model import LN2, PriorModel

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CodecMeasurement:
    """What the codec's files measure on a set of images (means per image).

    Attributes:
        images: images compressed (each way).
        dims: C*H*W of one image.
        header_bytes: bytes of every file's header (included in the file figures below).
        model_bits_per_dim: the ideal code length -log2 p(z) - log2 p(x|z) per dim under the
            learned prior and the likelihood head: ``total bits/dim, learned prior``; the sum of
        distortion_bits_per_dim: -log2 p(x|z) per dim, and
        rate_bits_per_dim: -log2 p(z) per dim under the learned prior (teacher-forced).
        lossless_bytes: mean lossless file size.
        lossless_bits_per_dim: mean lossless file size in bits per dim, header included.
        lossless_payload_bits_per_dim: the same without the header.
        lossy_bytes: mean lossy file size (the codes alone).
        lossy_bits_per_pixel: mean lossy file size in bits per pixel (H*W), header included.
        lossy_payload_bits_per_pixel: the same without the header.
        lossy_psnr: PSNR (dB) of the decoded lossy images (the mean of p(x|z)), from the mean
            squared error over all images.
        round_trips_verified: lossless files decoded back to their image bit for bit (all of them,
            or ``measure`` raises).
        compress_images_per_s, decompress_images_per_s: lossless, wall clock.
        lossy_compress_images_per_s, lossy_decompress_images_per_s: lossy, wall clock.
        threads: intra-op threads of the coder's tensor work.
        empirical_rate_bits_per_dim: -log2 p(z) per dim of the same codes under the empirical
            prior given to ``measure`` (the prior's training-code frequencies), or None.
    """

    images: int
    dims: int
    header_bytes: int
    model_bits_per_dim: float
    distortion_bits_per_dim: float
    rate_bits_per_dim: float
    lossless_bytes: float
    lossless_bits_per_dim: float
    lossless_payload_bits_per_dim: float
    lossy_bytes: float
    lossy_bits_per_pixel: float
    lossy_payload_bits_per_pixel: float
    lossy_psnr: float
    round_trips_verified: int
    compress_images_per_s: float
    decompress_images_per_s: float
    lossy_compress_images_per_s: float
    lossy_decompress_images_per_s: float
    threads: int = CODER_THREADS
    empirical_rate_bits_per_dim: float | None = None

    @property
    def overhead(self) -> float:
        """Lossless payload size over the ideal code length, minus 1 (0.001 = 0.1% larger)."""
        return self.lossless_payload_bits_per_dim / self.model_bits_per_dim - 1.0

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict) -> CodecMeasurement:
        values = dict(values)
        version = values.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise SchemaError(f"a codec measurement of schema version {version}; this depthq reads {SCHEMA_VERSION}")
        return cls(**values)


class IdealBits(NamedTuple):
    """An image's ideal code length in parts, bits per image (N,) float64 each."""

    distortion: Tensor  # -log2 p(x|z) under the likelihood head
    rate: Tensor  # -log2 p(z) under the learned prior
    empirical_rate: Tensor | None  # -log2 p(z) under an empirical prior, if one was given

    @property
    def total(self) -> Tensor:
        """-log2 p(z) - log2 p(x|z): the ideal size of a lossless file, header aside."""
        return self.distortion + self.rate


@torch.no_grad()
def ideal_bits(
    model, prior: PriorModel, images: Tensor, *, empirical: EmpiricalPrior | None = None, batch_size: int = 64
) -> IdealBits:
    """The ideal code lengths of ``images`` (uint8 (N, C, H, W)), summed over each image's tiles
    of the prior's image size, in fp32 on the models' device (teacher-forced prior). Sides that
    are not multiples of the tile are padded as the codec pads them: the padding's codes count,
    its pixels do not (the codec does not code them)."""
    device = next(model.parameters()).device
    tile = prior_tile(model, prior)
    parts = tiles(pad(images, tile), tile)
    inside = real_mask(images.shape[2], images.shape[3], tile).repeat(len(images), 1, 1)  # (n, t, t)
    distortion, rate, other = [], [], []
    for start in range(0, len(parts), batch_size):
        x = parts[start : start + batch_size].to(device)
        codes = model.encode(x)
        with torch.autocast(device.type, enabled=False):
            log_p = model.head.log_prob(model.decode(codes), x)  # (B, t, t) per pixel
            mask = inside[start : start + batch_size].to(device)
            distortion.append((-(log_p * mask).sum((1, 2)).double() / LN2).cpu())
        rate.append(prior.rate_bits(codes).cpu())
        if empirical is not None:
            other.append(empirical.rate_bits([z.cpu() for z in codes]))

    def per_image(chunks: list[Tensor]) -> Tensor:
        return torch.cat(chunks).view(len(images), -1).sum(1)

    return IdealBits(per_image(distortion), per_image(rate), per_image(other) if other else None)


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), its wall-clock seconds)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def measure(
    model, prior: PriorModel, images: Tensor, *, codec: Codec | None = None, empirical: EmpiricalPrior | None = None
) -> CodecMeasurement:
    """Compress and decompress ``images`` (uint8 (N, C, H, W)) both ways; verify every lossless
    round trip (``ValueError`` if any differs) and measure sizes, PSNR and speed. With
    ``empirical`` (e.g. ``PriorInfo.empirical_prior()``) also the empirical rate of the codes."""
    return measure_files(model, prior, images, codec=codec, empirical=empirical)[0]


def measure_files(
    model, prior: PriorModel, images: Tensor, *, codec: Codec | None = None, empirical: EmpiricalPrior | None = None
) -> tuple[CodecMeasurement, list[bytes], list[bytes]]:
    """``measure``, also returning the lossless and the lossy files' bytes."""
    if images.dim() != 4 or images.dtype != torch.uint8 or len(images) == 0:
        raise ValueError(f"expected a non-empty uint8 batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    codec = codec or Codec(model, prior)
    n, dims, pixels = len(images), images[0].numel(), images.shape[2] * images.shape[3]
    files, t_compress = timed(codec.compress, images)
    decoded, t_decompress = timed(codec.decompress, files)
    wrong = [i for i, (a, b) in enumerate(zip(decoded, images)) if not torch.equal(a, b)]
    if wrong:
        raise ValueError(f"lossless round trip failed for {len(wrong)} of {n} images (first: {wrong[0]})")
    lossy, t_lossy = timed(codec.compress, images, lossy=True)
    recon, t_lossy_back = timed(codec.decompress, lossy)
    mse = float(((torch.stack(recon).double() - images.double()) ** 2).mean())
    lossless_bytes = float(np.mean([len(f) for f in files]))
    lossy_bytes = float(np.mean([len(f) for f in lossy]))
    ideal = ideal_bits(model, prior, images, empirical=empirical)
    measurement = CodecMeasurement(
        images=n,
        dims=dims,
        header_bytes=HEADER_BYTES,
        model_bits_per_dim=float(ideal.total.mean()) / dims,
        distortion_bits_per_dim=float(ideal.distortion.mean()) / dims,
        rate_bits_per_dim=float(ideal.rate.mean()) / dims,
        lossless_bytes=lossless_bytes,
        lossless_bits_per_dim=8 * lossless_bytes / dims,
        lossless_payload_bits_per_dim=8 * (lossless_bytes - HEADER_BYTES) / dims,
        lossy_bytes=lossy_bytes,
        lossy_bits_per_pixel=8 * lossy_bytes / pixels,
        lossy_payload_bits_per_pixel=8 * (lossy_bytes - HEADER_BYTES) / pixels,
        lossy_psnr=psnr(mse),
        round_trips_verified=n,
        compress_images_per_s=n / t_compress,
        decompress_images_per_s=n / t_decompress,
        lossy_compress_images_per_s=n / t_lossy,
        lossy_decompress_images_per_s=n / t_lossy_back,
        empirical_rate_bits_per_dim=None if ideal.empirical_rate is None else float(ideal.empirical_rate.mean()) / dims,
    )
    return measurement, files, lossy


def pillow_bits_per_dim(images: Tensor, fmt: str) -> float:
    """Mean size in bits per dim of ``images`` (uint8 (N, C, H, W)) saved by Pillow one file per
    image: ``fmt`` "PNG" (compress_level 9) or "WEBP" (lossless, method 6, quality 100)."""
    options = {"PNG": {"compress_level": 9}, "WEBP": {"lossless": True, "method": 6, "quality": 100}}
    if fmt not in options:
        raise ValueError(f"fmt must be one of {sorted(options)}, got {fmt!r}")
    total = 0
    for x in images:
        array = x.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format=fmt, **options[fmt])
        total += buffer.tell()
    return 8 * total / (len(images) * images[0].numel())


@dataclass(frozen=True)
class LossyPoint:
    """A lossy reference codec at one setting: its rate and its PSNR on the images."""

    fmt: str
    quality: int
    bits_per_pixel: float
    psnr: float


def mosaic(images: Tensor) -> Tensor:
    """Images (N, C, H, W) tiled row-major into one near-square image (C, rows*H, cols*W); empty
    cells are black. Tiling amortises a lossy format's headers, as our per-image files carry
    only their header (``HEADER_BYTES``)."""
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = torch.zeros(rows * cols, c, h, w, dtype=torch.uint8)
    canvas[:n] = images
    return canvas.view(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def pillow_lossy(images: Tensor, fmt: str, quality: int) -> LossyPoint:
    """JPEG or lossy WebP at ``quality`` on the ``mosaic`` of ``images``: bits per image pixel
    (the mosaic's file over the images' pixels) and PSNR over the images' pixels."""
    if fmt not in ("JPEG", "WEBP"):
        raise ValueError(f"fmt must be JPEG or WEBP, got {fmt!r}")
    n, c, h, w = images.shape
    tiled = mosaic(images)
    array = tiled.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if c == 1 else array).save(buffer, format=fmt, quality=quality)
    size = buffer.tell()
    pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    decoded = torch.from_numpy(pixels.copy()).view(tiled.shape[1], tiled.shape[2], -1)[..., :c].permute(2, 0, 1)
    cols = tiled.shape[2] // w
    back = decoded.reshape(c, -1, h, cols, w).permute(1, 3, 0, 2, 4).reshape(-1, c, h, w)[:n]
    mse = float(((back.double() - images.double()) ** 2).mean())
    return LossyPoint(fmt, quality, 8 * size / (n * h * w), psnr(mse))


def pillow_lossy_at_rate(images: Tensor, fmt: str, bits_per_pixel: float) -> LossyPoint:
    """The quality (1..100) of ``fmt`` whose rate on ``images`` is closest to ``bits_per_pixel``
    (bisection: the rate grows with the quality)."""
    low, high = 1, 100
    while high - low > 1:
        mid = (low + high) // 2
        if pillow_lossy(images, fmt, mid).bits_per_pixel > bits_per_pixel:
            high = mid
        else:
            low = mid
    candidates = [pillow_lossy(images, fmt, q) for q in (low, high)]
    return min(candidates, key=lambda p: abs(p.bits_per_pixel - bits_per_pixel))
