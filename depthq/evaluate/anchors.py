"""Codec anchors: what PNG, WebP and JPEG (Pillow's encoders) do on the images a model is tested on.

Pure functions of a uint8 batch (N, C, H, W), C = 1 or 3; nothing here knows about models.

**Lossless** (``LosslessAnchor``): bits/dim = 8 * bytes / (N*C*H*W), for

- PNG (``optimize=True``, zlib level 9);
- WebP lossless (quality 100; method 2 for a file per image, method 5 for the mosaic: in a sweep
  of methods 0-6 on 32x32 photo patches these gave the smallest files, and method 6 was no
  smaller at 15-30 times the time),

each measured two ways: one file per image (every file pays its header) and all images tiled
into one mosaic (headers paid once; ``MAX_SIDE`` caps a mosaic's side, more images make more
mosaics). Every mosaic is decoded and checked to be exact.

**Lossy** (``RateDistortionCurve``): a quality sweep on the images tiled into mosaics whose cells
are padded (edge replication) to multiples of ``BLOCK`` = 16 pixels, so no 8x8 JPEG block, 16x16
chroma MCU or WebP macroblock mixes two images. Each point is (bits per pixel, PSNR):

- bits per pixel = 8 * bytes / (N*H*W): the padding is paid for but not counted as pixels;
- PSNR = 10 log10(255^2 / MSE), MSE over all N*C*H*W sub-pixels of the images (padding excluded),
  the convention of the model's own PSNR.

Curves: "JPEG 4:2:0" (Pillow's default) and "JPEG 4:4:4", both with optimised Huffman tables,
and "WebP" (lossy, method 6); ``CodecAnchors.best_psnr_at`` reads the better JPEG subsampling at a
rate ("JPEG best subsampling" in ``at_rates``). For C = 1 there is one "JPEG" curve (greyscale
JPEG has no chroma). The encodes run in a thread pool (Pillow's codecs release the GIL).

**Greyscale and WebP**: WebP has no greyscale mode, so C = 1 images are encoded as RGB with three
equal channels; the file's full size is counted against the N*1*H*W sub-pixels of the images
(honest: that is what storing them as WebP costs), and the lossy decode is read back as the mean
of its three channels.

**Interpolation** (``psnr_at``, ``rate_at``): on the curve's Pareto frontier (sorted by rate, each
point better than every cheaper one), linear in log(rate). A target outside the measured range is
clamped to the nearest measured end and flagged ``extrapolated``: below the lowest rate the codec
cannot go (its lowest quality costs more), above the highest the figure understates it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, features
from PIL import __version__ as pillow_version

SCHEMA = 1
BLOCK = 16  # lossy mosaic cells are padded to multiples of this
MAX_SIDE = 16_383  # WebP's largest side; JPEG's is larger
JPEG_QUALITIES = (1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
PNG = "PNG"
WEBP_LOSSLESS = "WebP lossless"
JPEG_BEST = "JPEG best subsampling"  # at_rates' entry for the better of 4:2:0 and 4:4:4

Encoder = Callable[[Image.Image], bytes]


def encode(image: Image.Image, **options: Any) -> bytes:
    """The bytes of ``image`` saved by Pillow with ``options`` (``format`` and the encoder's settings)."""
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """A file's bytes decoded by Pillow: uint8 (H, W) for greyscale, (H, W, C) otherwise."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def jpeg_options(quality: int, subsampling: int = 2, optimize: bool = True) -> dict[str, Any]:
    """Pillow's JPEG options: ``subsampling`` 2 is 4:2:0 (Pillow's default), 0 is 4:4:4; ``optimize``
    computes optimised Huffman tables (Pillow's default is off)."""
    return {"format": "JPEG", "quality": quality, "optimize": optimize, "subsampling": subsampling}


def webp_options(quality: int, method: int = 6) -> dict[str, Any]:
    """Pillow's lossy WebP options; ``method`` 0 (fast) to 6 (smallest files; Pillow's default is 4)."""
    return {"format": "WEBP", "quality": quality, "method": method}


LOSSLESS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # codec -> (per-file options, mosaic options)
    PNG: ({"format": "PNG", "optimize": True, "compress_level": 9},) * 2,
    WEBP_LOSSLESS: (
        {"format": "WEBP", "lossless": True, "quality": 100, "method": 2},
        {"format": "WEBP", "lossless": True, "quality": 100, "method": 5},
    ),
}


# --- typed results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LosslessAnchor:
    """A lossless codec's size on the images, in bits per sub-pixel."""

    codec: str  # "PNG" or "WebP lossless"
    bits_per_dim: float  # one file per image: 8 * total bytes / (N*C*H*W)
    bits_per_dim_tiled: float  # the images tiled into mosaics: headers paid once
    settings: str  # the encoder options, per file / tiled


@dataclass(frozen=True)
class RatePoint:
    """One encoding of the mosaics."""

    setting: str  # e.g. "q30" or "q30 4:4:4"
    bits_per_pixel: float  # 8 * bytes / (N*H*W)
    psnr: float  # dB over all N*C*H*W sub-pixels


@dataclass(frozen=True)
class Interpolated:
    """A value read off a curve; ``extrapolated``: the target was outside the measured range."""

    value: float
    extrapolated: bool


@dataclass(frozen=True)
class RateDistortionCurve:
    """A lossy codec's quality sweep; points in the order measured."""

    codec: str
    settings: str
    points: tuple[RatePoint, ...]

    def frontier(self) -> list[RatePoint]:
        """The Pareto frontier: sorted by rate, each point with a higher PSNR than every cheaper one."""
        out: list[RatePoint] = []
        for p in sorted(self.points, key=lambda p: (p.bits_per_pixel, -p.psnr)):
            if not out or p.psnr > out[-1].psnr:
                out.append(p)
        return out

    def psnr_at(self, bits_per_pixel: float) -> Interpolated:
        """PSNR (dB) at a rate, linear in log(rate) between measured points, clamped outside them."""
        if not bits_per_pixel > 0:
            raise ValueError(f"bits_per_pixel must be > 0; got {bits_per_pixel}")
        f = self._front()
        rates, psnrs = [p.bits_per_pixel for p in f], [p.psnr for p in f]
        value = float(np.interp(math.log(bits_per_pixel), np.log(rates), psnrs))
        return Interpolated(value, not rates[0] <= bits_per_pixel <= rates[-1])

    def rate_at(self, psnr: float) -> Interpolated:
        """Bits per pixel needed for a PSNR (the inverse of ``psnr_at``), clamped outside the range."""
        f = self._front()
        rates, psnrs = [p.bits_per_pixel for p in f], [p.psnr for p in f]
        value = float(np.exp(np.interp(psnr, psnrs, np.log(rates))))
        return Interpolated(value, not psnrs[0] <= psnr <= psnrs[-1])

    def _front(self) -> list[RatePoint]:
        front = self.frontier()
        if not front:
            raise ValueError(f"the {self.codec} curve has no measured point")
        return front


@dataclass(frozen=True)
class AnchorAtRate:
    """A lossy codec's PSNR interpolated at a requested rate (``measure_anchors(rates=...)``)."""

    codec: str
    bits_per_pixel: float
    psnr: float
    extrapolated: bool
    chosen: str = ""  # for the "JPEG best subsampling" entry: the curve that won at this rate


@dataclass(frozen=True)
class CodecAnchors:
    """Every anchor measured on one batch of images."""

    images: int  # N
    channels: int  # C
    height: int
    width: int
    lossless: tuple[LosslessAnchor, ...]
    curves: tuple[RateDistortionCurve, ...]
    at_rates: tuple[AnchorAtRate, ...]  # each curve at each requested rate
    seconds: float  # wall time of the measurement
    notes: tuple[str, ...]

    def lossless_anchor(self, codec: str) -> LosslessAnchor:
        return _find(self.lossless, codec)

    def curve(self, codec: str) -> RateDistortionCurve:
        return _find(self.curves, codec)

    def psnr_at(self, bits_per_pixel: float) -> dict[str, Interpolated]:
        """Every lossy codec's PSNR at ``bits_per_pixel``, by codec name."""
        return {c.codec: c.psnr_at(bits_per_pixel) for c in self.curves}

    def best_psnr_at(self, bits_per_pixel: float, family: str = "JPEG") -> tuple[str, Interpolated]:
        """The best curve of a family ("JPEG": the better subsampling) at a rate: (codec, PSNR)."""
        found = {k: v for k, v in self.psnr_at(bits_per_pixel).items() if k.split()[0] == family}
        if not found:
            raise KeyError(f"no {family} curve; measured: {[c.codec for c in self.curves]}")
        return max(found.items(), key=lambda kv: kv[1].value)

    def with_rates(self, rates: Sequence[float]) -> CodecAnchors:
        """A copy whose ``at_rates`` reads every curve (and the better JPEG) at ``rates`` (bits per pixel).

        No encoding: anchors measured once per test split serve every model's rates.
        """
        _check_rates(rates)
        at_rates: list[AnchorAtRate] = []
        curves = [c for c in self.curves if c.points]
        for r in rates:
            here = [AnchorAtRate(c.codec, float(r), (i := c.psnr_at(r)).value, i.extrapolated) for c in curves]
            jpegs = [a for a in here if a.codec.startswith("JPEG ")]
            if len(jpegs) > 1:  # the better subsampling at this rate
                best = max(jpegs, key=lambda a: a.psnr)
                here.append(AnchorAtRate(JPEG_BEST, best.bits_per_pixel, best.psnr, best.extrapolated, best.codec))
            at_rates += here
        return replace(self, at_rates=tuple(at_rates))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecAnchors:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"codec anchors: expected schema {SCHEMA}, got {data.get('schema')!r}")
        curves = tuple(
            RateDistortionCurve(c["codec"], c["settings"], tuple(RatePoint(**p) for p in c["points"]))
            for c in data["curves"]
        )
        return cls(
            data["images"],
            data["channels"],
            data["height"],
            data["width"],
            tuple(LosslessAnchor(**a) for a in data["lossless"]),
            curves,
            tuple(AnchorAtRate(**a) for a in data["at_rates"]),
            data["seconds"],
            tuple(data["notes"]),
        )


def _check_rates(rates: Sequence[float]) -> None:
    if any(not r > 0 for r in rates):
        raise ValueError(f"rates are bits per pixel > 0; got {list(rates)}")


def _find(items: Sequence[Any], codec: str) -> Any:
    for item in items:
        if item.codec == codec:
            return item
    raise KeyError(f"no anchor for codec {codec!r}; measured: {[i.codec for i in items]}")


# --- mosaics -----------------------------------------------------------------------------------
def _layout(n: int, cell_h: int, cell_w: int) -> tuple[int, int]:
    """(rows, columns) of a mosaic of ``n`` cells: near-square, fewest empty cells, sides <= MAX_SIDE."""
    best = None
    first = max(1, math.isqrt(n * cell_h // cell_w))
    for cols in range(first, min(n, MAX_SIDE // cell_w, 2 * first + 2) + 1):
        rows = -(-n // cols)
        if rows * cell_h > MAX_SIDE:
            continue
        score = (rows * cols - n, abs(rows * cell_h - cols * cell_w))
        if best is None or score < best[0]:
            best = (score, (rows, cols))
    if best is None:
        raise ValueError(f"{n} cells of {cell_h}x{cell_w} do not fit one mosaic of at most {MAX_SIDE} pixels a side")
    return best[1]


def mosaics(images: np.ndarray, block: int = 1) -> list[tuple[np.ndarray, int]]:
    """Tile uint8 (N, C, H, W) into (H', W', C) mosaics of cells padded to multiples of ``block``.

    Returns (mosaic, images in it) pairs; empty cells at the end are zero. The padding replicates
    each image's last row and column.
    """
    n, c, h, w = images.shape
    ch, cw = -(-h // block) * block, -(-w // block) * block
    per = (MAX_SIDE // ch) * (MAX_SIDE // cw)
    out = []
    for start in range(0, n, per):
        part = images[start : start + per].transpose(0, 2, 3, 1)  # (n', H, W, C)
        part = np.pad(part, ((0, 0), (0, ch - h), (0, cw - w), (0, 0)), mode="edge")
        rows, cols = _layout(len(part), ch, cw)
        grid = np.zeros((rows * cols, ch, cw, c), np.uint8)
        grid[: len(part)] = part
        out.append(
            (grid.reshape(rows, cols, ch, cw, c).transpose(0, 2, 1, 3, 4).reshape(rows * ch, cols * cw, c), len(part))
        )
    return out


def _cells(mosaic: np.ndarray, count: int, h: int, w: int, block: int) -> np.ndarray:
    """The inverse of ``mosaics`` for one mosaic: (count, H, W, C), padding and empty cells dropped."""
    ch, cw = -(-h // block) * block, -(-w // block) * block
    rows, cols = mosaic.shape[0] // ch, mosaic.shape[1] // cw
    cells = mosaic.reshape(rows, ch, cols, cw, -1).transpose(0, 2, 1, 3, 4).reshape(rows * cols, ch, cw, -1)
    return cells[:count, :h, :w]


def pil_image(array: np.ndarray, rgb: bool = False) -> Image.Image:
    """(H, W, C) uint8 -> a Pillow image ('L' or 'RGB'; ``rgb`` replicates greyscale: WebP has no 'L')."""
    if array.shape[-1] == 1:
        return Image.fromarray(array[..., 0]).convert("RGB") if rgb else Image.fromarray(array[..., 0])
    return Image.fromarray(array)


# --- measurements ------------------------------------------------------------------------------
def _lossless(images: np.ndarray, codec: str) -> LosslessAnchor:
    per_file, tiled = LOSSLESS[codec]
    rgb = codec == WEBP_LOSSLESS  # WebP has no greyscale mode
    nbytes = sum(len(encode(pil_image(im.transpose(1, 2, 0), rgb), **per_file)) for im in images)
    tiled_bytes = 0
    for mosaic, _ in mosaics(images):
        data = encode(pil_image(mosaic, rgb), **tiled)
        decoded = decode(data).reshape(mosaic.shape[0], mosaic.shape[1], -1)[..., : mosaic.shape[-1]]
        if not np.array_equal(decoded, mosaic):
            raise RuntimeError(f"{codec} did not decode its own mosaic exactly: an encoder bug")
        tiled_bytes += len(data)
    dims = images.size
    settings = ", ".join(f"{k}={v}" for k, v in per_file.items() if k != "format")
    if tiled != per_file:
        settings += "; tiled: " + ", ".join(f"{k}={v}" for k, v in tiled.items() if k != "format")
    return LosslessAnchor(codec, 8 * nbytes / dims, 8 * tiled_bytes / dims, settings)


def _sweep(
    pool: Executor,
    images: np.ndarray,
    codec: str,
    qualities: Sequence[int],
    options: Callable[[int], dict[str, Any]],
    rgb: bool,
    label: Callable[[int], str],
) -> RateDistortionCurve:
    n, c, h, w = images.shape
    tiles = mosaics(images, BLOCK)

    def point(q: int) -> RatePoint | None:
        nbytes, sq_err = 0, 0.0
        for mosaic, count in tiles:
            data = encode(pil_image(mosaic, rgb), **options(q))
            decoded = decode(data).astype(np.float64)
            if decoded.ndim == 2:
                decoded = decoded[..., None]
            if decoded.shape[-1] != c:  # greyscale stored as RGB: read back the mean of the channels
                decoded = decoded.mean(axis=-1, keepdims=True)
            err = _cells(decoded, count, h, w, BLOCK) - _cells(mosaic, count, h, w, BLOCK)
            nbytes, sq_err = nbytes + len(data), sq_err + float(np.square(err).sum())
        if sq_err == 0.0:
            return None  # lossless at this quality: not a point of a lossy curve
        return RatePoint(label(q), 8 * nbytes / (n * h * w), 10 * math.log10(255.0**2 / (sq_err / images.size)))

    points = tuple(p for p in pool.map(point, qualities) if p is not None)  # Pillow encodes without the GIL
    settings = ", ".join(f"{k}={v}" for k, v in options(0).items() if k not in ("format", "quality"))
    return RateDistortionCurve(codec, f"quality {list(qualities)}; {settings}", points)


def _as_uint8_batch(images: Any) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor, without importing torch here
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or 0 in images.shape:
        raise ValueError(
            "codec anchors need uint8 images (N, C, H, W) with C = 1 or 3 and N, H, W > 0; "
            f"got {images.dtype} {images.shape}"
        )
    return np.ascontiguousarray(images)


def anchor_key(images: Any, **options: Any) -> str:
    """A hash of the images' bytes and shape, the options and the encoder versions: a cache key for
    ``measure_anchors`` results (anchors depend on the test images only, not on a model)."""
    x = _as_uint8_batch(images)
    digest = hashlib.sha1(x.tobytes())
    digest.update(
        repr(
            (
                x.shape,
                sorted(options.items()),
                SCHEMA,
                pillow_version,
                features.version("webp"),
                features.version("jpg"),
                features.version("zlib"),
            )
        ).encode()
    )
    return digest.hexdigest()[:16]


def measure_anchors(
    images: Any,
    rates: Sequence[float] = (),
    *,
    jpeg_qualities: Sequence[int] = JPEG_QUALITIES,
    webp_qualities: Sequence[int] = WEBP_QUALITIES,
    lossless: bool = True,
) -> CodecAnchors:
    """PNG / WebP-lossless bits/dim and JPEG / WebP rate-distortion curves on ``images``.

    Args:
        images: uint8 (N, C, H, W), C = 1 or 3 (numpy array or torch tensor).
        rates: bits per pixel at which to read every lossy curve (e.g. the model's code rates);
            the results are in ``CodecAnchors.at_rates``.
        jpeg_qualities, webp_qualities: the quality sweeps.
        lossless: measure the lossless anchors (the slower part: one file per image).

    Example::

        anchors = measure_anchors(test_images, rates=[0.5])       # CodecAnchors
        anchors.lossless_anchor("PNG").bits_per_dim               # e.g. 4.78
        anchors.curve("JPEG 4:2:0").psnr_at(0.5)                  # Interpolated(value=.., extrapolated=False)
    """
    start = time.perf_counter()
    x = _as_uint8_batch(images)
    _check_rates(rates)  # before the encoding, not after
    n, c, h, w = x.shape
    jpeg = lambda sub: lambda q: jpeg_options(q, sub)  # noqa: E731
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        lossless_jobs = [pool.submit(_lossless, x, codec) for codec in (LOSSLESS if lossless else ())]
        if c == 3:
            curves = [
                _sweep(pool, x, "JPEG 4:2:0", jpeg_qualities, jpeg(2), False, lambda q: f"q{q}"),
                _sweep(pool, x, "JPEG 4:4:4", jpeg_qualities, jpeg(0), False, lambda q: f"q{q} 4:4:4"),
            ]
        else:
            curves = [_sweep(pool, x, "JPEG", jpeg_qualities, jpeg(0), False, lambda q: f"q{q}")]
        curves.append(_sweep(pool, x, "WebP", webp_qualities, webp_options, c == 1, lambda q: f"q{q}"))
        anchors = tuple(job.result() for job in lossless_jobs)
    notes = [
        f"lossy: images tiled into mosaics of {BLOCK}-aligned cells (edge-padded); bits per pixel count "
        "the padding's bytes but not its pixels; PSNR over all sub-pixels of the images",
        "JPEG with optimised Huffman tables (optimize=True); WebP lossy method 6",
    ]
    if c == 1:
        notes.append(
            "WebP has no greyscale mode: the images were encoded as RGB with equal channels and the whole "
            "file is counted per greyscale sub-pixel; lossy decodes read back as the channel mean"
        )
    result = CodecAnchors(n, c, h, w, anchors, tuple(curves), (), time.perf_counter() - start, tuple(notes))
    return result.with_rates(rates)
