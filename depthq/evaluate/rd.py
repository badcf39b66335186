"""Rate-distortion on whole images, CompressAI's way: per-image files, per-image metrics, means.

For any lossy codec, ``evaluate_lossy(images, names, points)`` turns what it produced (per rate
point, per image: the file's size, the decoded image and the times) into CompressAI's results
(``depthq.evaluate.compressai_schema``). ``pillow_anchor`` does the coding itself for JPEG or
WebP (Pillow) at a sweep of qualities. ``bd_against`` reads the BD-rate and BD-PSNR of one
curve against another (``depthq.evaluate.bd``).

Conventions (CompressAI's ``eval_model`` and ``bench``):

- images are used whole: any size, no resize, crop, tiling or padding here (a codec that pads
  to a multiple of its stride pads and crops back itself, and pays for the padding in its file);
- per image: bpp = 8 * bytes / (H*W), the whole file (header included) over the image's pixels;
  PSNR over its C*H*W sub-pixels; MS-SSIM (``depthq.evaluate.quality``), or nothing for sides
  of 160 pixels or less; encoding and decoding time in seconds;
- per rate point: the mean over the images of each of those (``compressai_schema.aggregate``).

The Pillow anchors run as CompressAI's ``bench`` runs them, with Pillow's defaults: JPEG at
``quality`` (4:2:0, no Huffman optimisation), WebP at ``quality`` (method 4). Times are wall
clock around Pillow's encode (of an image already in memory) and decode, one image at a time.
A greyscale image is JPEG-coded as greyscale; WebP has no greyscale mode, so it is coded as RGB
with equal channels (the whole file counted) and decoded back as the rounded channel mean.
A quality at which some image decodes exactly is left out (a lossless point has no PSNR).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import __version__ as pillow_version

from depthq.evaluate.anchors import (
    JPEG_QUALITIES,
    MAX_SIDE,
    WEBP_QUALITIES,
    decode,
    encode,
    jpeg_options,
    pil_image,
    webp_options,
)
from depthq.evaluate.bd import bd_psnr, bd_rate
from depthq.evaluate.compressai_schema import MS_SSIM_DB_RGB, PSNR_RGB, CodecResults, ImageResult, aggregate
from depthq.evaluate.quality import image_psnr, ms_ssim, ms_ssim_unavailable

PILLOW_CODECS: dict[str, tuple[Callable[[int], dict[str, Any]], Sequence[int]]] = {
    # codec -> (Pillow options at a quality, as CompressAI's bench; the default quality sweep)
    "JPEG": (lambda q: jpeg_options(q, subsampling=2, optimize=False), JPEG_QUALITIES),
    "WebP": (lambda q: webp_options(q, method=4), WEBP_QUALITIES),
}


@dataclass(frozen=True)
class LossyImage:
    """One image as a lossy codec coded it at one rate point.

    Attributes:
        nbytes: the size of its file in bytes, everything the decoder needs (header included).
        decoded: the decoded image, uint8 (C, H, W), the original's shape (numpy or torch).
        encoding_time, decoding_time: seconds, or None if not measured.
    """

    nbytes: int
    decoded: Any
    encoding_time: float | None = None
    decoding_time: float | None = None


@dataclass(frozen=True)
class RateDistortion:
    """A codec evaluated on whole images.

    Attributes:
        results: CompressAI's aggregate (means per rate point); ``results.write(path)`` saves it.
        images: per rate point, one ``ImageResult`` per image (CompressAI's per-image files).
        settings: per rate point, what it was (e.g. "q30"; a model's name).
        notes: what a reader must know (points left out, metrics not measured).
    """

    results: CodecResults
    images: tuple[tuple[ImageResult, ...], ...]
    settings: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BDComparison:
    """The Bjontegaard deltas of ``test`` against ``anchor`` on one quality metric.

    Attributes:
        test, anchor: the curves' names.
        metric: the quality axis: "psnr-rgb" or "ms-ssim-db-rgb" (MS-SSIM in dB).
        method: "cubic" (VCEG-M33) or "pchip".
        bd_rate: percent rate change of ``test`` at equal quality (negative: fewer bits).
        bd_quality: mean quality change of ``test`` at equal rate, dB.
    """

    test: str
    anchor: str
    metric: str
    method: str
    bd_rate: float
    bd_quality: float


def _as_images(images: Sequence[Any], names: Sequence[str]) -> list[np.ndarray]:
    if len(images) == 0 or len(images) != len(names):
        raise ValueError(
            f"expected one name per image and at least one image; got {len(images)} images, {len(names)} names"
        )
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"image names must be unique non-empty strings; got {list(names)}")
    out = []
    for name, x in zip(names, images):
        if hasattr(x, "detach"):  # a torch tensor
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[0] not in (1, 3) or 0 in x.shape:
            raise ValueError(f"image {name!r}: expected uint8 (C, H, W) with C = 1 or 3; got {x.dtype} {x.shape}")
        out.append(x)
    return out


def _measure(name: str, original: np.ndarray, coded: LossyImage, with_ms_ssim: bool) -> ImageResult:
    """One image's CompressAI record; ``ValueError`` for a wrong shape or an exact decode."""
    if isinstance(coded.nbytes, bool) or not isinstance(coded.nbytes, (int, np.integer)) or coded.nbytes <= 0:
        raise ValueError(f"image {name!r}: nbytes must be a positive integer, got {coded.nbytes!r}")
    decoded = coded.decoded.detach().cpu().numpy() if hasattr(coded.decoded, "detach") else np.asarray(coded.decoded)
    if decoded.shape != original.shape or decoded.dtype != np.uint8:
        raise ValueError(
            f"image {name!r}: decoded as {decoded.dtype} {decoded.shape}, expected uint8 {original.shape} (uncropped "
            "padding?)"
        )
    value = image_psnr(original, decoded)
    if value == float("inf"):
        raise ValueError(f"image {name!r} decodes exactly: a lossless point has no PSNR; leave the point out")
    h, w = original.shape[1:]
    return ImageResult(
        source=name,
        bpp=8.0 * int(coded.nbytes) / (h * w),
        psnr_rgb=value,
        ms_ssim_rgb=ms_ssim(original, decoded) if with_ms_ssim else None,
        encoding_time=coded.encoding_time,
        decoding_time=coded.decoding_time,
    )


def _notes(images: Sequence[np.ndarray], names: Sequence[str], with_ms_ssim: bool) -> list[str]:
    if not with_ms_ssim:
        return ["MS-SSIM not measured (ms_ssim=False)"]
    small = [
        f"{n} ({ms_ssim_unavailable(*x.shape[1:])})" for n, x in zip(names, images) if ms_ssim_unavailable(*x.shape[1:])
    ]
    return [f"no MS-SSIM in the results: images too small for it: {'; '.join(small)}"] if small else []


def evaluate_lossy(
    images: Sequence[Any],
    names: Sequence[str],
    points: Sequence[Sequence[LossyImage]],
    *,
    name: str,
    description: str,
    settings: Sequence[str] | None = None,
    ms_ssim: bool = True,
) -> RateDistortion:
    """CompressAI's results of a lossy codec from what it produced on whole images.

    Args:
        images: the originals, uint8 (C, H, W) each, C = 1 or 3, any sizes (numpy or torch).
        names: one unique name per image (CompressAI: the file's stem).
        points: per rate point, one ``LossyImage`` per image, in the order of ``images``.
        name: the curve's label.
        description: how it was measured.
        settings: per rate point, a label (default "point 0", "point 1", ...).
        ms_ssim: measure MS-SSIM (the slow part on large images).

    Example::

        rd = evaluate_lossy(images, names, [[LossyImage(len(f), codec.decode(f)) for f in files]],
                            name="DQ-AE", description="depthq lossy .dqz")
        rd.results.write("dq.json")  # plots with CompressAI's own tool, or depthq's rd_curves
    """
    originals = _as_images(images, names)
    if not points:
        raise ValueError(f"{name}: expected at least one rate point")
    settings = tuple(settings) if settings is not None else tuple(f"point {i}" for i in range(len(points)))
    if len(settings) != len(points):
        raise ValueError(f"{name}: expected one setting per rate point; got {len(settings)} for {len(points)} points")
    measured = []
    for i, point in enumerate(points):
        if len(point) != len(originals):
            raise ValueError(
                f"{name}, {settings[i]}: expected one coded image per image ({len(originals)}); got {len(point)}"
            )
        measured.append(tuple(_measure(n, x, c, ms_ssim) for n, x, c in zip(names, originals, point)))
    results = aggregate(name, description, measured)
    return RateDistortion(results, tuple(measured), settings, tuple(_notes(originals, names, ms_ssim)))


def _pillow_code(image: np.ndarray, options: dict[str, Any]) -> LossyImage:
    """Code one (C, H, W) image with Pillow, timing the encode and the decode."""
    c = image.shape[0]
    pil = pil_image(image.transpose(1, 2, 0), rgb=c == 1 and options["format"] == "WEBP")
    start = time.perf_counter()
    data = encode(pil, **options)
    encoding_time = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode(data)
    decoding_time = time.perf_counter() - start
    decoded = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)  # (C', H, W)
    if decoded.shape[0] != c:  # greyscale coded as RGB: back to one channel
        decoded = np.rint(decoded.mean(0, keepdims=True)).astype(np.uint8)
    return LossyImage(len(data), np.ascontiguousarray(decoded), encoding_time, decoding_time)


def pillow_anchor(
    images: Sequence[Any],
    names: Sequence[str],
    codec: str = "JPEG",
    qualities: Sequence[int] | None = None,
    *,
    options: Callable[[int], dict[str, Any]] | None = None,
    ms_ssim: bool = True,
) -> RateDistortion:
    """JPEG or WebP (Pillow) on whole images at a sweep of qualities, in CompressAI's schema.

    Args:
        images: as ``evaluate_lossy``.
        names: as ``evaluate_lossy``.
        codec: "JPEG" or "WebP".
        qualities: the sweep (default ``anchors.JPEG_QUALITIES`` / ``anchors.WEBP_QUALITIES``).
        options: Pillow's save options at a quality (default: Pillow's defaults, as CompressAI's
            bench; e.g. ``lambda q: anchors.jpeg_options(q)`` for optimised Huffman tables).
        ms_ssim: measure MS-SSIM.
    """
    if codec not in PILLOW_CODECS:
        raise ValueError(f"codec must be one of {sorted(PILLOW_CODECS)}; got {codec!r}")
    originals = _as_images(images, names)
    default_options, default_qualities = PILLOW_CODECS[codec]
    options = options or default_options
    qualities = tuple(qualities if qualities is not None else default_qualities)
    if not qualities or any(isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100 for q in qualities):
        raise ValueError(f"qualities must be integers in 0..100; got {list(qualities)}")
    if codec == "WebP" and (big := [n for n, x in zip(names, originals) if max(x.shape[1:]) > MAX_SIDE]):
        raise ValueError(f"WebP's largest side is {MAX_SIDE} pixels; too large: {big}")
    points, settings, notes = [], [], []
    for q in sorted(set(qualities)):
        coded = [_pillow_code(x, options(q)) for x in originals]
        exact = [n for n, x, c in zip(names, originals, coded) if np.array_equal(x, c.decoded)]
        if exact:
            notes.append(f"q{q} left out: decoded exactly (no PSNR): {exact}")
            continue
        points.append(coded)
        settings.append(f"q{q}")
    if not points:
        raise ValueError(f"{codec}: every quality in {list(qualities)} decoded some image exactly; no lossy point")
    shown = {k: v for k, v in options(qualities[0]).items() if k not in ("format", "quality")}
    description = (
        f"{codec}. Pillow version {pillow_version}; qualities {[int(s[1:]) for s in settings]}; "
        + ", ".join(f"{k}={v}" for k, v in shown.items())
        + "; whole images"
    )
    rd = evaluate_lossy(
        originals, names, points, name=codec, description=description, settings=settings, ms_ssim=ms_ssim
    )
    return RateDistortion(rd.results, rd.images, rd.settings, tuple(notes) + rd.notes)


def bd_against(test: CodecResults, anchor: CodecResults, metric: str = PSNR_RGB, method: str = "cubic") -> BDComparison:
    """BD-rate and BD-quality of ``test`` against ``anchor`` on ``metric``: "psnr-rgb" or
    "ms-ssim-db-rgb" (MS-SSIM in dB, from either of its keys). ``ValueError`` if a curve lacks
    the metric, or is too short, not monotonic or disjoint from the other (``bd.check_curve``)."""
    if metric not in (PSNR_RGB, MS_SSIM_DB_RGB):
        raise ValueError(f"metric must be {PSNR_RGB!r} or {MS_SSIM_DB_RGB!r}; got {metric!r}")
    curves = []
    for role, r in (("test", test), ("anchor", anchor)):
        quality = r.series(metric)
        if quality is None:
            raise ValueError(f"the {role} curve {r.name!r} has no {metric!r} series")
        curves += [r.bpp, quality]
    try:
        rate = bd_rate(curves[2], curves[3], curves[0], curves[1], method)
        gain = bd_psnr(curves[2], curves[3], curves[0], curves[1], method)
    except ValueError as err:
        raise ValueError(f"{test.name} against {anchor.name} on {metric}: {err}") from None
    return BDComparison(test.name, anchor.name, metric, method, rate, gain)
