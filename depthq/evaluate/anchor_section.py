"""The ``anchors`` section of an evaluation: PNG, WebP and JPEG on the images the model was evaluated on.

``anchor_section(images, result)`` measures ``measure_anchors`` on the evaluated images (or reads
it from the cache: the anchors depend on the images only, so every model evaluated on a split
shares one measurement) and sets it next to the model:

- lossless: PNG and WebP-lossless bits/dim (one file per image, and all images tiled into one
  file) next to the model's ``total bits/dim`` under each prior;
- lossy: JPEG (the better chroma subsampling) and WebP PSNR read off their quality sweeps at the
  model's code rate in bits per pixel (-log2 p(z) / (H*W) under the empirical and, when there is
  one, the learned prior; the uniform prior's when neither was measured), next to the model's
  PSNR. A rate outside a sweep is not interpolated: below the codec's lowest rate it reads
  "n/a", above its highest ">=".

Cache: ``$DEPTHQ_CACHE/anchors/<anchor_key>.json`` (default ``~/.cache/depthq``), keyed by the
images' bytes, the quality sweeps and the encoders' versions. Measuring took 6 s (wall) for the
602 photos test patches and 30 s for the 3,001 scenes test patches on 2 shared CPU cores; a
cached read, 0.02 s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthq.atomic import write_json
from depthq.data.cache import cache_root
from depthq.errors import SchemaError
from depthq.evaluate.anchors import (
    JPEG_QUALITIES,
    PNG,
    WEBP_LOSSLESS,
    WEBP_QUALITIES,
    CodecAnchors,
    Interpolated,
    anchor_key,
    measure_anchors,
)
from depthq.evaluate.result import EvalResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
NOT_MEASURED = "n/a (not measured)"


@dataclass(frozen=True)
class ModelPoint:
    """The model's figures under one prior, which the anchors are set against."""

    prior: str
    bits_per_pixel: float
    """-log2 p(z) per image over H*W: the code rate a lossy codec is compared at."""
    total_bits_per_dim: float | None
    """distortion + rate (None for a head without likelihood)."""


@dataclass(frozen=True)
class AnchorSection:
    """Codec anchors on the evaluated images, next to the model's rates and PSNR."""

    anchors: CodecAnchors
    """Measured on the evaluated images; ``at_rates`` reads every curve at the points' rates."""
    points: tuple[ModelPoint, ...]
    psnr: float
    """The model's PSNR (dB) on the same images."""
    key: str
    """``anchor_key`` of the images and sweeps: the cache file's name."""

    @property
    def lossy_points(self) -> tuple[ModelPoint, ...]:
        """The points a lossy codec can be read at (a rate > 0: not K = 1 everywhere)."""
        return tuple(p for p in self.points if p.bits_per_pixel > 0)

    @property
    def compared_points(self) -> tuple[ModelPoint, ...]:
        """The rates the table compares at: empirical and learned, else uniform."""
        fitted = tuple(p for p in self.lossy_points if p.prior != "uniform")
        return fitted or self.lossy_points

    def jpeg_at(self, bits_per_pixel: float) -> tuple[str, Interpolated]:
        """(curve, PSNR) of JPEG at a rate: the better chroma subsampling for colour images."""
        return self.anchors.best_psnr_at(bits_per_pixel, "JPEG")

    def webp_at(self, bits_per_pixel: float) -> Interpolated:
        return self.anchors.curve("WebP").psnr_at(bits_per_pixel)

    def _cell(self, codec: str, value: Interpolated, bits_per_pixel: float) -> str:
        """A PSNR read at a rate, or why it cannot be (see the module docstring)."""
        at = f"at {bits_per_pixel:.3f} bpp"
        if not value.extrapolated:
            return f"{value.value:.2f} {at}"
        front = self.anchors.curve(codec).frontier()
        if bits_per_pixel < front[0].bits_per_pixel:
            return f"n/a ({at}: below its lowest rate, {front[0].bits_per_pixel:.3f})"
        return f">= {value.value:.2f} {at} (above its highest rate)"

    def table_rows(self) -> list[tuple[str, str]]:
        rows = []
        for codec in (PNG, WEBP_LOSSLESS):
            anchor = self.anchors.lossless_anchor(codec)
            rows += [
                (f"{codec}, bits/dim (one file per image)", f"{anchor.bits_per_dim:.3f}"),
                (f"{codec}, bits/dim (all images tiled in one file)", f"{anchor.bits_per_dim_tiled:.3f}"),
            ]
        for p in self.compared_points:
            jpeg, value = self.jpeg_at(p.bits_per_pixel)
            rows += [
                (f"JPEG PSNR (dB) at the model's rate, {p.prior} prior", self._cell(jpeg, value, p.bits_per_pixel)),
                (
                    f"WebP PSNR (dB) at the model's rate, {p.prior} prior",
                    self._cell("WebP", self.webp_at(p.bits_per_pixel), p.bits_per_pixel),
                ),
            ]
        return rows

    def report_markdown(self) -> str:
        a = self.anchors
        lines = [
            "## Codec anchors on the same images",
            "",
            f"Pillow's PNG, WebP and JPEG on the {a.images:,} evaluated images ({a.channels}x{a.height}x"
            f"{a.width}), measured in {a.seconds:.0f} s (cached, key `{self.key}`).",
            "",
            "| lossless | bits/dim, one file per image | bits/dim, all images tiled in one file |",
            "|---|---|---|",
        ]
        lines += [
            f"| {x.codec} ({x.settings}) | {x.bits_per_dim:.4f} | {x.bits_per_dim_tiled:.4f} |" for x in a.lossless
        ]
        lines += [
            f"| this model, total bits/dim, {p.prior} prior | {p.total_bits_per_dim:.4f} | |"
            for p in self.points
            if p.total_bits_per_dim is not None
        ]
        lines += [
            "",
            f"Lossy, at the model's code rate (the rate of its codes over H·W pixels); the model's "
            f"PSNR is {self.psnr:.2f} dB (the mean of p(x|z)):",
            "",
            "| prior of the rate | bits per pixel | JPEG PSNR (dB) | WebP PSNR (dB) |",
            "|---|---|---|---|",
        ]
        for p in self.lossy_points:
            jpeg, value = self.jpeg_at(p.bits_per_pixel)
            lines.append(
                f"| {p.prior} | {p.bits_per_pixel:.3f} | {self._cell(jpeg, value, p.bits_per_pixel)} "
                f"({jpeg}) | {self._cell('WebP', self.webp_at(p.bits_per_pixel), p.bits_per_pixel)} |"
            )
        lines += ["", *(f"- {note}" for note in a.notes)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "anchors": self.anchors.to_dict(),
            "points": [dataclasses.asdict(p) for p in self.points],
            "psnr": self.psnr,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AnchorSection:
        if values.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(
                f"anchors: expected schema version {SCHEMA_VERSION}, got {values.get('schema_version')!r}"
            )
        try:
            return cls(
                CodecAnchors.from_dict(values["anchors"]),
                tuple(ModelPoint(**p) for p in values["points"]),
                values["psnr"],
                values["key"],
            )
        except (KeyError, TypeError) as err:
            raise SchemaError(f"anchors: {type(err).__name__}: {err}") from None


def anchor_cache() -> Path:
    """Where measured anchors are kept: ``$DEPTHQ_CACHE/anchors``."""

    return cache_root() / "anchors"


def cached_anchors(images: Any, cache: Path | None = None) -> tuple[CodecAnchors, str]:
    """``measure_anchors`` of ``images`` (no rates), from the cache when measured before: (anchors, key)."""
    key = anchor_key(images, jpeg_qualities=JPEG_QUALITIES, webp_qualities=WEBP_QUALITIES)
    path = (cache or anchor_cache()) / f"{key}.json"
    if path.is_file():
        try:
            return CodecAnchors.from_dict(json.loads(path.read_text())), key
        except (ValueError, KeyError, TypeError) as err:  # damaged: measure again
            log.warning("ignoring the damaged anchor cache %s (%s)", path, err)
    log.info("measuring PNG, WebP and JPEG on the %d evaluated images (once; cached in %s)", len(images), path.parent)
    start = time.perf_counter()
    anchors = measure_anchors(images)
    log.info("codec anchors measured in %.1f s", time.perf_counter() - start)
    write_json(path, anchors.to_dict())
    return anchors, key


def anchor_section(images: Any, result: EvalResult, cache: Path | None = None) -> AnchorSection:
    """The anchors of ``images`` (uint8 (N, C, H, W): the images ``result`` was evaluated on)
    next to ``result``'s rates and PSNR."""
    anchors, key = cached_anchors(images, cache)
    pixels = anchors.height * anchors.width
    points = tuple(ModelPoint(r.prior, r.bits_per_image / pixels, result.total(r.prior)) for r in result.rates)
    rates = [p.bits_per_pixel for p in points if p.bits_per_pixel > 0]
    return AnchorSection(anchors.with_rates(rates), points, result.psnr, key)
