"""Figures of an evaluation (matplotlib, headless): the pictures of the paper's Figs. 1, 3 and 4.

- ``mi_matrices``: pairwise mutual information between a level's codebooks, entropy on the
  diagonal (Fig. 3 right); one panel per level, or per run in ``depthq compare``;
- ``entropy_maps``: code entropy per position (nats/pixel, Fig. 3 left) and its histogram;
- ``hierarchy``: originals, the full reconstruction, and each level decoded alone (Fig. 4), on
  ``labelled_rows`` (image rows with their labels in the picture);
- ``training_curves``: loss, bits/dim, code usage and information per position from metrics.csv;
- ``rd_curves``: PSNR and MS-SSIM (dB) against bpp of named codecs (CompressAI's results files),
  the way CompressAI's plotting tool draws them.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from depthq.atomic import atomic_write
from depthq.evaluate.compressai_schema import MS_SSIM_DB_RGB, PSNR_RGB, CodecResults
from depthq.evaluate.result import metric_name
from depthq.images import make_grid, save_reconstructions


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as a PNG (atomically) and close it."""
    path = Path(path)
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return out


def mi_matrices(
    panels: Sequence[tuple[str, np.ndarray | None]],
    path: str | os.PathLike,
    title: str = "Mutual information between codebooks (nats; diagonal: entropy)",
) -> Path:
    """Heat maps of (M, M) MI matrices, one panel per (title, matrix); None draws "n/a"."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 3.6), squeeze=False, layout="constrained")
    vmax = max((float(np.nanmax(m)) for _, m in panels if m is not None and m.size), default=1.0)
    for ax, (name, matrix) in zip(axes[0], panels):
        ax.set_title(name, fontsize=10)
        if matrix is None or matrix.shape[0] < 2:
            ax.text(0.5, 0.5, "one codebook:\nno pairs", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax)
        m = matrix.shape[0]
        ax.set_xticks(range(m))
        ax.set_yticks(range(m))
        ax.set_xlabel("codebook")
        ax.set_ylabel("codebook")
        if m <= 8:
            for i in range(m):
                for j in range(m):
                    ax.text(
                        j,
                        i,
                        f"{matrix[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if matrix[i, j] < 0.6 * vmax else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def entropy_maps(maps: Sequence[np.ndarray], path: str | os.PathLike) -> Path:
    """Per level: the mean code entropy per position (H, W) and the histogram of (M, H, W) values."""
    n = len(maps)
    fig, axes = plt.subplots(2, n, figsize=(3.9 * n, 6.6), squeeze=False, layout="constrained")
    for level, entropy in enumerate(maps):
        top, bottom = axes[0, level], axes[1, level]
        im = top.imshow(entropy.mean(0), cmap="magma", vmin=0)
        top.set_title(
            f"level {level}: mean entropy per position\n(nats/pixel, {entropy.shape[1]}x{entropy.shape[2]})", fontsize=9
        )
        top.set_axis_off()
        fig.colorbar(im, ax=top, fraction=0.046, pad=0.04)
        bottom.hist(entropy.reshape(-1), bins=30, color="tab:blue")
        bottom.set_xlabel("entropy of a codebook at a position (nats)")
        bottom.set_ylabel("count")
        bottom.set_title(f"mean {entropy.mean():.2f} nats", fontsize=9)
    return save_figure(fig, path)


def labelled_rows(
    rows: Sequence[Tensor], labels: Sequence[str], path: str | os.PathLike, title: str = "", scale: int = 3
) -> Path:
    """Rows of uint8 images (N, C, H, W), each with its label written beside it in the PNG."""
    if len(rows) != len(labels):
        raise ValueError(f"expected one label per row, got {len(labels)} labels for {len(rows)} rows")
    grid = make_grid(rows, scale=scale).numpy()
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 80 + 1.6, grid.shape[0] / 80 + (0.4 if title else 0)))
    ax.imshow(grid)
    step = grid.shape[0] / len(rows)
    ax.set_yticks([step * (i + 0.5) for i in range(len(rows))])
    ax.set_yticklabels(labels)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def hierarchy(originals: Tensor, full: Tensor, per_level: Sequence[Tensor], path: str | os.PathLike) -> Path:
    """Rows: originals, the full reconstruction, then each level decoded with the others zeroed."""
    labels = ["originals", "all levels", *(f"level {i} alone" for i in range(len(per_level)))]
    return labelled_rows(
        [originals, full, *per_level], labels, path, title="Decoding from a subset of levels (others zeroed)"
    )


def reconstructions(originals: Tensor, recons: Tensor, path: str | os.PathLike) -> Path:
    """Originals above reconstructions (a plain PNG grid)."""

    return save_reconstructions(originals, recons, path, scale=3)


def _read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key != "step" and value not in (None, ""):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def curve_panels(series: dict[str, list[tuple[int, float]]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(metric key, label), ...]) of the training-curve panels that have data."""
    levels = sorted({int(k.rsplit("_l", 1)[1]) for k in series if k.startswith("val/info_fraction_l")})
    panels = [
        ("training loss", [("train/loss", "train loss")]),
        (
            "bits/dim",
            [
                ("train/distortion_bpd", "train, distortion only"),
                (metric_name("distortion"), "val, distortion only (paper convention)"),
                (metric_name("total_uniform"), "val, total, uniform prior"),
                (metric_name("total_empirical"), "val, total, empirical prior (EMA counts)"),
            ],
        ),
        (
            "code perplexity (mean per codebook)",
            [
                (k, k.split("/")[1].replace("perplexity_l", "level "))
                for k in sorted(series)
                if k.startswith("train/perplexity_l")
            ],
        ),
        (
            "val information per position\n(fraction of the capacity M log2 K)",
            [(metric_name("info_fraction", i), f"level {i}") for i in levels],
        ),
    ]
    panels = [(t, [(k, lbl) for k, lbl in lines if k in series]) for t, lines in panels]
    return [p for p in panels if p[1]]


def _curves_figure(series: dict[str, list[tuple[int, float]]]):
    panels = curve_panels(series)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for key, label in lines:
            finite = [(s, v) for s, v in series[key] if math.isfinite(v)]
            if finite:  # a marker on every validation, and on any series of one point (no line)
                marker = "o" if key.startswith("val/") or len(finite) == 1 else None
                ax.plot(*zip(*finite), label=label, marker=marker, ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def training_curves(metrics_csv: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Loss, bits/dim (labelled), code perplexity and the levels' information over training,
    from a run's metrics.csv."""
    series = _read_metrics(Path(metrics_csv))
    if not curve_panels(series):
        return None
    return save_figure(_curves_figure(series), path)


def rate_distortion(
    points: Sequence[tuple[str, float, float]],
    curves: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    path: str | os.PathLike,
    title: str = "PSNR against code rate on the test images",
) -> Path:
    """Labelled (label, bits per pixel, PSNR) points over codec curves (name, [(bpp, PSNR), ...])."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves:
        xs, ys = zip(*sorted(curve))
        ax.plot(xs, ys, "-", color="0.6", lw=1)
        ax.annotate(name, (xs[-1], ys[-1]), fontsize=8, color="0.4", ha="right", va="bottom")
    for label, bpp, db in points:
        marker = "o" if "DQ" in label else "s"
        ax.plot([bpp], [db], marker, ms=6)
        ax.annotate(label, (bpp, db), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("bits per pixel (code rate, empirical prior; file size for the codecs)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


RD_AXES = {PSNR_RGB: "PSNR-RGB (dB)", MS_SSIM_DB_RGB: "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)"}
CLASSICAL = ("JPEG", "WebP", "BPG", "HM", "VTM", "AV1")  # drawn dashed, as CompressAI's plot does


def rd_panels(
    curves: Sequence[CodecResults], metrics: Sequence[str] = (PSNR_RGB, MS_SSIM_DB_RGB)
) -> list[tuple[str, list[tuple[str, list[float], list[float], bool]]]]:
    """(metric, [(name, bpp, quality in dB, dashed), ...]) per panel that has data; points sorted
    by bpp; MS-SSIM in dB from either of its keys; non-finite points (MS-SSIM of 1) dropped."""
    unknown = [m for m in metrics if m not in RD_AXES]
    if unknown:
        raise ValueError(f"metrics must be among {sorted(RD_AXES)}; got {unknown}")
    panels = []
    for metric in metrics:
        lines = []
        for c in curves:
            ys = c.series(metric)
            if ys is None:
                continue
            points = sorted((x, y) for x, y in zip(c.bpp, ys) if math.isfinite(y))
            if points:
                xs, vs = zip(*points)
                lines.append((c.name, list(xs), list(vs), any(k in c.name for k in CLASSICAL)))
        if lines:
            panels.append((metric, lines))
    return panels


def rd_curves(
    curves: Sequence[CodecResults | str | os.PathLike],
    path: str | os.PathLike,
    metrics: Sequence[str] = (PSNR_RGB, MS_SSIM_DB_RGB),
    title: str = "",
) -> Path:
    """Rate-distortion curves on shared axes, one panel per metric (PSNR; MS-SSIM in dB).

    ``curves``: ``CodecResults`` (a model's, ``rd.pillow_anchor``'s JPEG and WebP) or paths of
    CompressAI results files (its published curves), each labelled by its name; a curve without a
    metric is left out of that panel. Markers at the measured points, classical codecs dashed.
    """
    loaded = [c if isinstance(c, CodecResults) else CodecResults.read(c) for c in curves]
    panels = rd_panels(loaded, metrics)
    if not panels:
        raise ValueError(f"no curve has any of the metrics {list(metrics)}: nothing to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False, layout="constrained")
    for ax, (metric, lines) in zip(axes[0], panels):
        for name, xs, ys, dashed in lines:
            ax.plot(
                xs,
                ys,
                "--" if dashed else "-",
                marker="o" if len(xs) < 3 else ".",
                ms=7 if len(xs) < 3 else 5,
                lw=1,
                label=name,
            )
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel(RD_AXES[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
