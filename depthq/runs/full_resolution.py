"""``depthq eval --full-resolution FOLDER``: rate-distortion of run folders on whole images,
in CompressAI's conventions, next to JPEG and WebP on the same images.

Each run folder (an autoencoder with its learned prior) is one rate point of the curve, as each
of CompressAI's trained models is one point of its curves. Every image of the folder is used
whole: no resize, no crop; the codec pads to its tile grid by edge replication, stores the true
size and crops back, and the padding's cost is in its file. Per image and per run:

- lossy: the ``.dqz`` file's bytes (header included) -> ``bpp`` = 8 * bytes / (H*W); PSNR over
  the C*H*W sub-pixels; MS-SSIM where both sides exceed 160 pixels; encoding and decoding time
  (wall clock, one image at a time);
- lossless (unless ``lossless=False``): the exact round trip is checked, and its bits/dim
  (8 * bytes / (C*H*W)) and times are set next to PNG's and lossless WebP's on the same image.

The lossy curve (means over the images, ``depthq.evaluate.rd.evaluate_lossy``) and the Pillow
anchors (``rd.pillow_anchor``) go into CompressAI's results files; the Bjontegaard deltas of
the curve against each anchor are taken over each curve's frontier (``frontier``: the points no
other point beats at a lower rate) and need 4 points (cubic) or 2 (pchip): with fewer, the
note says why, and the PSNR of the anchor at each of the curve's points (linear interpolation
between its two nearest qualities) is always given.

Written to ``out``::

    <name>.json, jpeg.json, webp.json     CompressAI results files (its plotting tool reads them)
    per-image/<codec>-<setting>-<image>.json   eval_model --per-image files
    lossless.json                          per image: depthq, PNG and WebP lossless
    summary.json                           the BD deltas (or the anchors at the same rate), notes
    rate_distortion.png                    the curves on shared axes (PSNR; MS-SSIM in dB)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from depthq.atomic import write_json
from depthq.codec.format import CodecError
from depthq.codec.images import read_image
from depthq.codec.measure import timed
from depthq.data.folder import list_images
from depthq.errors import DataError, RunDirError, UsageError
from depthq.evaluate.anchors import LOSSLESS, MAX_SIDE, PNG, WEBP_LOSSLESS, encode, pil_image
from depthq.evaluate.bd import MIN_POINTS
from depthq.evaluate.compressai_schema import MS_SSIM_DB_RGB, PSNR_RGB, CodecResults
from depthq.evaluate.figures import rd_curves
from depthq.evaluate.quality import ssim
from depthq.evaluate.rd import BDComparison, LossyImage, RateDistortion, bd_against, evaluate_lossy, pillow_anchor
from depthq.limits import DEFAULT_MAX_PIXELS
from depthq.runs.codec import codec_of
from depthq.runs.saved import SavedRun

ANCHORS = ("JPEG", "WebP")
SSIM_RGB = "ssim-rgb"  # an extra series of depthq's results file: mean SSIM per point


@dataclass(frozen=True)
class LosslessImage:
    """One image's lossless figures: depthq's ``.dqz`` against PNG and lossless WebP.

    Attributes:
        source: the image's name; run: the run folder's name.
        height, width, channels: the image's size.
        bits_per_dim: 8 * bytes / (C*H*W) of each file: "depthq", "PNG", "WebP" (None when WebP
            cannot hold the image: a side over 16383 pixels).
        encoding_time, decoding_time: depthq's seconds.
        exact: the round trip gave the image back bit for bit (always checked).
    """

    source: str
    run: str
    height: int
    width: int
    channels: int
    bits_per_dim: dict[str, float | None]
    encoding_time: float
    decoding_time: float
    exact: bool


@dataclass(frozen=True)
class AnchorAtRate:
    """An anchor's mean PSNR at the curve's mean bpp, read off its measured points (linear
    between the two neighbouring qualities); None outside its measured range."""

    anchor: str
    run: str
    bpp: float
    psnr_rgb: float | None
    model_psnr_rgb: float


@dataclass(frozen=True)
class FullResolution:
    """What ``evaluate_full_resolution`` measured and wrote.

    Attributes:
        model: the runs' lossy curve (one point per run, by increasing bpp).
        anchors: JPEG's and WebP's curves on the same images.
        bd: the Bjontegaard deltas of the curve against each anchor (PSNR, and MS-SSIM in dB
            where measured); empty with fewer points than BD needs.
        at_rate: the anchors' PSNR at the curve's points, always given.
        lossless: per run and image, the lossless figures; empty with ``lossless=False``.
        notes: what a reader must know.
        out: the output folder; figure: the rate-distortion plot.
    """

    model: RateDistortion
    anchors: dict[str, RateDistortion]
    bd: tuple[BDComparison, ...]
    at_rate: tuple[AnchorAtRate, ...]
    lossless: tuple[LosslessImage, ...]
    notes: tuple[str, ...]
    out: Path
    figure: Path


def _read_folder(folder: Path, channels: int, max_images: int | None, max_pixels: int) -> tuple[list, list[str]]:
    paths = list_images(folder)[:max_images]
    images = [read_image(p, channels, max_pixels=max_pixels) for p in paths]
    names = [p.relative_to(folder).with_suffix("").as_posix() for p in paths]
    return images, names


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _pillow_lossless_bits(image: torch.Tensor) -> dict[str, float | None]:
    """PNG's and lossless WebP's bits/dim on one image, with the anchors' per-file settings
    (``anchors.LOSSLESS``, as every other depthq evaluation)."""
    c, h, w = image.shape
    array = image.permute(1, 2, 0).numpy()
    bits: dict[str, float | None] = {"PNG": 8.0 * len(encode(pil_image(array), **LOSSLESS[PNG][0])) / (c * h * w)}
    if max(h, w) > MAX_SIDE:
        bits["WebP"] = None
    else:  # WebP has no greyscale mode: one channel is coded as RGB, the whole file counted
        webp = encode(pil_image(array, rgb=c == 1), **LOSSLESS[WEBP_LOSSLESS][0])
        bits["WebP"] = 8.0 * len(webp) / (c * h * w)
    return bits


def frontier(results: CodecResults, metric: str = PSNR_RGB) -> CodecResults:
    """The points of a curve that no other point beats on ``metric`` at a lower or equal rate
    (sorted by bpp, each better than every one before it): the curve BD integrates. A point
    with a lower quality at a higher rate (a quality setting past its codec's best, noise in a
    mean over few images) is left out; so is a later point of equal rate."""
    quality = results.series(metric)
    if quality is None:
        raise ValueError(f"{results.name} has no {metric!r} series")
    keep: list[int] = []
    for i in sorted(range(results.points), key=lambda i: (results.bpp[i], -quality[i])):
        if not math.isfinite(quality[i]):  # MS-SSIM of exactly 1 is infinite in dB
            continue
        if not keep or (quality[i] > quality[keep[-1]] and results.bpp[i] > results.bpp[keep[-1]]):
            keep.append(i)
    values = [tuple(results.bpp[i] for i in keep), tuple(quality[i] for i in keep)]
    if metric == PSNR_RGB:
        return CodecResults(results.name, results.description, values[0], psnr_rgb=values[1])
    return CodecResults(results.name, results.description, values[0], ms_ssim_db_rgb=values[1])


def _anchor_at(anchor: CodecResults, bpp: float) -> float | None:
    if anchor.psnr_rgb is None:
        return None
    order = np.argsort(anchor.bpp)
    xs, ys = np.asarray(anchor.bpp)[order], np.asarray(anchor.psnr_rgb)[order]
    if not xs[0] <= bpp <= xs[-1]:
        return None
    return float(np.interp(bpp, xs, ys))


def evaluate_full_resolution(
    run_dirs: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str = "depthq",
    weights: str = "model.safetensors",
    device: str = "cpu",
    max_images: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    lossless: bool = True,
    ms_ssim: bool = True,
    force: bool = False,
    progress: bool | None = None,
) -> FullResolution:
    """Rate-distortion of ``run_dirs`` (one rate point each) on the whole images of ``folder``,
    with JPEG and WebP on the same images, written to ``out`` (see the module's docstring)."""
    if not run_dirs:
        raise UsageError("give at least one run folder")
    if max_images is not None and max_images < 1:
        raise UsageError(f"--max-images must be >= 1, got {max_images}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunDirError(f"{out} exists and is not empty (pass --force, or another --out)")
    folder = Path(folder)
    runs = [SavedRun.open(r, weights=weights, device=device) for r in run_dirs]
    labels = [r.run_dir.name for r in runs]
    if len(set(labels)) != len(labels):
        labels = [str(r.run_dir) for r in runs]
    channels = {r.model.config.image_channels for r in runs}
    if len(channels) != 1:
        raise UsageError(f"the runs code images of different channel counts ({sorted(channels)}): one curve needs one")
    images, names = _read_folder(folder, channels.pop(), max_images, max_pixels)
    codecs = [codec_of(r, max_pixels=max_pixels, progress=False).codec for r in runs]

    points: list[list[LossyImage]] = []
    lossless_rows: list[LosslessImage] = []
    pillow_lossless = [_pillow_lossless_bits(x) if lossless else {} for x in images]
    total = len(runs) * len(images)
    disable = None if progress is None else not progress  # None: shown on a terminal
    with tqdm(total=total, desc="full-resolution eval", unit="image", disable=disable, leave=False) as bar:
        for label, codec in zip(labels, codecs):
            coded = []
            for x, source, pillow in zip(images, names, pillow_lossless):
                [blob], enc = timed(codec.compress, [x], lossy=True)
                [decoded], dec = timed(codec.decompress, [blob])
                coded.append(LossyImage(len(blob), decoded, enc, dec))
                if lossless:
                    [exact_blob], lenc = timed(codec.compress, [x])
                    [back], ldec = timed(codec.decompress, [exact_blob])
                    c, h, w = x.shape
                    exact = bool(torch.equal(back, x))
                    if not exact:
                        raise CodecError(f"{source}: the lossless round trip of run {label} is not exact")
                    lossless_rows.append(
                        LosslessImage(source, label, h, w, c, {"depthq": 8.0 * len(exact_blob) / (c * h * w), **pillow},
                                      lenc, ldec, exact)
                    )  # fmt: skip
                bar.update(1)
            points.append(coded)

    # the points in order of increasing bpp (the mean of the images' bpp, as the aggregate's):
    # BD and the plots want a curve
    order = sorted(
        range(len(points)), key=lambda i: np.mean([8 * c.nbytes / x[0].numel() for x, c in zip(images, points[i])])
    )
    points, labels = [points[i] for i in order], [labels[i] for i in order]
    notes: list[str] = []
    try:
        model = evaluate_lossy(
            images, names, points, name=name, description=_description(runs), settings=labels, ms_ssim=ms_ssim
        )
    except ValueError as err:
        raise DataError(f"full-resolution evaluation of {folder}: {err}") from None
    model = _with_ssim(model, images, points, notes)
    notes += model.notes
    anchors = {}
    for codec_name in ANCHORS:
        try:
            anchors[codec_name] = pillow_anchor(images, names, codec_name, ms_ssim=ms_ssim)
        except ValueError as err:
            notes.append(f"{codec_name} left out: {err}")
            continue
        notes += [f"{codec_name}: {n}" for n in anchors[codec_name].notes if n not in model.notes]

    bd, at_rate = [], []
    n = model.results.points
    method = "cubic" if n >= MIN_POINTS["cubic"] else "pchip"
    for codec_name, anchor in anchors.items():
        for i, bpp in enumerate(model.results.bpp):
            assert model.results.psnr_rgb is not None
            at_rate.append(
                AnchorAtRate(
                    codec_name, model.settings[i], bpp, _anchor_at(anchor.results, bpp), model.results.psnr_rgb[i]
                )
            )
        if n < MIN_POINTS["pchip"]:
            continue
        for metric in (PSNR_RGB, MS_SSIM_DB_RGB):
            if model.results.series(metric) is None or anchor.results.series(metric) is None:
                continue
            test, reference = frontier(model.results, metric), frontier(anchor.results, metric)
            try:
                bd.append(
                    bd_against(test, reference, metric, "cubic" if test.points >= MIN_POINTS["cubic"] else method)
                )
            except ValueError as err:
                notes.append(f"no BD against {codec_name} on {metric}: {err}")
    if n < MIN_POINTS["pchip"]:
        notes.append(
            f"no BD-rate: {n} rate point (one per run folder); BD needs {MIN_POINTS['pchip']} (pchip) or "
            f"{MIN_POINTS['cubic']} (cubic): the anchors' PSNR at the same bpp is given instead"
        )
    elif method == "pchip":
        notes.append(f"BD by pchip interpolation: {n} rate points, fewer than the {MIN_POINTS['cubic']} cubic BD needs")

    figure = _write(out, name, model, anchors, bd, at_rate, lossless_rows, notes, folder, len(images))
    return FullResolution(model, anchors, tuple(bd), tuple(at_rate), tuple(lossless_rows), tuple(notes), out, figure)


def _with_ssim(
    rd: RateDistortion, images: Sequence, points: Sequence[Sequence[LossyImage]], notes: list
) -> RateDistortion:
    """The curve with the mean SSIM per point as an extra series ``ssim-rgb`` (CompressAI's files
    have no SSIM key; its plotting tool ignores series it does not ask for), when every image
    has one (sides of at least 11 pixels)."""
    values = [[ssim(x, coded.decoded) for x, coded in zip(images, point)] for point in points]
    if any(v is None for point in values for v in point):
        notes.append("no SSIM: an image has a side under 11 pixels (one window)")
        return rd
    extra = {**rd.results.extra, SSIM_RGB: tuple(float(np.mean(point)) for point in values)}  # type: ignore[arg-type]
    return RateDistortion(dataclasses.replace(rd.results, extra=extra), rd.images, rd.settings, rd.notes)


def _description(runs: Sequence[SavedRun]) -> str:
    return "depthq lossy .dqz (mean of p(x|z)), whole images padded to the tile grid; runs: " + ", ".join(
        f"{r.run_dir.name} ({r.weights}, {r.digest[:12]})" for r in runs
    )


def _write(
    out: Path,
    name: str,
    model: RateDistortion,
    anchors: dict[str, RateDistortion],
    bd: list[BDComparison],
    at_rate: list[AnchorAtRate],
    lossless: list[LosslessImage],
    notes: list[str],
    folder: Path,
    count: int,
) -> Path:
    curves = {name: model, **anchors}
    for label, rd in curves.items():
        rd.results.write(out / f"{_safe(label.lower())}.json")
        for setting, per_image in zip(rd.settings, rd.images):
            for result in per_image:
                write_json(
                    out / "per-image" / f"{_safe(label)}-{_safe(setting)}-{_safe(result.source)}.json",
                    result.to_dict(label, rd.results.description),
                )
    if lossless:
        write_json(out / "lossless.json", {"images": [asdict(row) for row in lossless], **_lossless_means(lossless)})
    summary: dict[str, Any] = {
        "folder": str(folder),
        "images": count,
        "curve": name,
        "points": [{"run": s, "bpp": b} for s, b in zip(model.settings, model.results.bpp)],
        "bd": [asdict(b) for b in bd],
        "anchors_at_rate": [asdict(a) for a in at_rate],
        "notes": notes,
    }
    write_json(out / "summary.json", summary)
    return rd_curves([c.results for c in curves.values()], out / "rate_distortion.png",
                     title=f"{folder.name}: {count} whole images")  # fmt: skip


def _lossless_means(rows: Sequence[LosslessImage]) -> dict[str, Any]:
    """Means over the images, per run: bits/dim of each codec, depthq's seconds."""
    means: dict[str, Any] = {}
    for run in dict.fromkeys(r.run for r in rows):
        mine = [r for r in rows if r.run == run]
        figures: dict[str, float | None] = {}
        for key in mine[0].bits_per_dim:
            values = [r.bits_per_dim[key] for r in mine]
            figures[key] = None if any(v is None for v in values) else float(np.mean(values))  # type: ignore[arg-type]
        means[run] = {
            "bits_per_dim": figures,
            "encoding_time": float(np.mean([r.encoding_time for r in mine])),
            "decoding_time": float(np.mean([r.decoding_time for r in mine])),
        }
    return {"means": means}


def format_summary(result: FullResolution) -> str:
    """The terminal's summary: the curve's points, the anchors at their rate, BD, lossless."""
    r = result.model.results
    lines = [f"{r.name} on {len(result.model.images[0])} whole images (mean per image):"]
    lines.append(f"  {'run':<24} {'bpp':>7} {'PSNR dB':>8} {'SSIM':>7} {'MS-SSIM':>8} {'enc s':>7} {'dec s':>7}")
    ssims = r.extra.get(SSIM_RGB)
    for i, setting in enumerate(result.model.settings):
        ms = "-" if r.ms_ssim_rgb is None else f"{r.ms_ssim_rgb[i]:.4f}"
        enc = "-" if r.encoding_time is None else f"{r.encoding_time[i]:.2f}"
        dec = "-" if r.decoding_time is None else f"{r.decoding_time[i]:.2f}"
        psnr = r.psnr_rgb[i] if r.psnr_rgb is not None else math.nan
        ss = "-" if ssims is None else f"{ssims[i]:.4f}"
        lines.append(f"  {setting:<24} {r.bpp[i]:>7.3f} {psnr:>8.2f} {ss:>7} {ms:>8} {enc:>7} {dec:>7}")
    for a in result.at_rate:
        there = "outside its measured range" if a.psnr_rgb is None else f"{a.psnr_rgb:.2f} dB"
        gap = "" if a.psnr_rgb is None else f" ({a.run} {a.model_psnr_rgb - a.psnr_rgb:+.2f} dB)"
        lines.append(f"  {a.anchor} at {a.run}'s {a.bpp:.3f} bpp: {there}{gap}")
    for b in result.bd:
        lines.append(f"  BD against {b.anchor} on {b.metric} ({b.method}): rate {b.bd_rate:+.1f}%, "
                     f"quality {b.bd_quality:+.2f} dB")  # fmt: skip
    if result.lossless:
        for run, figures in _lossless_means(result.lossless)["means"].items():
            bits = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in figures["bits_per_dim"].items())
            lines.append(
                f"  lossless ({run}): bits/dim {bits}; depthq {figures['encoding_time']:.2f} s to compress, "
                f"{figures['decoding_time']:.2f} s to decompress per image"
            )
    lines += [f"  note: {n}" for n in result.notes]
    return "\n".join(lines)
