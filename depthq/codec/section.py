"""The ``codec`` section of an evaluation: real .dqz files of evaluated images, measured.

``measure_section(model, prior, images)`` compresses the images both ways with ``measure_files``
(every lossless round trip checked bit for bit), measures PNG and WebP-lossless on the same
images one file per image (``pillow_bits_per_dim``) and JPEG and WebP at the lossy files' rate
(``pillow_lossy_at_rate``, the images tiled into one file), and returns a ``CodecSection``: the
figures ``depthq eval --codec`` adds to the table and the report, and ``depthq compress --split``
prints.

Figures (means per image; dims = C*H*W):

- ideal bits/dim: -log2 p(z) - log2 p(x|z) under the learned prior and the likelihood head, i.e.
  ``total bits/dim, learned prior`` on these images;
- file bits/dim: the lossless files' payload (header excluded) and whole size; payload / ideal
  is the coder's overhead (the target: within 1%);
- lossy: the codes alone; bits per pixel of the payload (JPEG and WebP are read at that rate on
  one tiled file, whose header is amortised too) and PSNR of the mean of p(x|z).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from depthq.codec.coder import Codec
from depthq.codec.measure import (
    CodecMeasurement,
    LossyPoint,
    measure_files,
    pillow_bits_per_dim,
    pillow_lossy_at_rate,
)
from depthq.errors import SchemaError
from depthq.evaluate.bits import EmpiricalPrior
from depthq.prior.learned import LearnedPrior
from depthq.prior.model import PriorModel

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CodecSection:
    """Real .dqz files of (the first) evaluated images next to the ideal code length and Pillow."""

    measurement: CodecMeasurement
    png_bits_per_dim: float
    """PNG, one file per image, on the same images."""
    webp_lossless_bits_per_dim: float
    """WebP lossless, one file per image, on the same images."""
    lossy_references: tuple[LossyPoint, ...]
    """JPEG and WebP at the quality whose rate is nearest the lossy files' payload rate."""

    @property
    def ratio(self) -> float:
        """Lossless payload over the ideal code length (1.001: 0.1% larger)."""
        return self.measurement.lossless_payload_bits_per_dim / self.measurement.model_bits_per_dim

    def reference(self, fmt: str) -> LossyPoint:
        return next(r for r in self.lossy_references if r.fmt == fmt)

    def table_rows(self) -> list[tuple[str, str]]:
        m = self.measurement
        jpeg, webp = self.reference("JPEG"), self.reference("WEBP")
        return [
            (
                f".dqz lossless, bits/dim of the file payload ({m.images} images)",
                f"{m.lossless_payload_bits_per_dim:.4f}",
            ),
            (".dqz lossless, bits/dim of the whole file (header included)", f"{m.lossless_bits_per_dim:.4f}"),
            (".dqz: ideal bits/dim on the same images (total, learned prior)", f"{m.model_bits_per_dim:.4f}"),
            (".dqz payload / ideal", f"{self.ratio:.4f}"),
            (".dqz lossless round trips bit-exact", f"{m.round_trips_verified}/{m.images}"),
            (
                ".dqz lossless images/s, compress / decompress",
                f"{m.compress_images_per_s:.1f} / {m.decompress_images_per_s:.1f}",
            ),
            (
                ".dqz lossy: payload bits per pixel, PSNR (dB)",
                f"{m.lossy_payload_bits_per_pixel:.3f}, {m.lossy_psnr:.2f}",
            ),
            (".dqz lossy: JPEG / WebP PSNR (dB) at that rate", f"{jpeg.psnr:.2f} / {webp.psnr:.2f}"),
        ]

    def report_markdown(self) -> str:
        m = self.measurement
        rows = [
            ("ideal code length, -log2 p(z) - log2 p(x|z) (total bits/dim, learned prior)", m.model_bits_per_dim),
            (
                f".dqz lossless files, payload (the {m.header_bytes}-byte header excluded)",
                m.lossless_payload_bits_per_dim,
            ),
            (".dqz lossless files, whole file", m.lossless_bits_per_dim),
            ("PNG (Pillow, one file per image)", self.png_bits_per_dim),
            ("WebP lossless (Pillow, one file per image)", self.webp_lossless_bits_per_dim),
            ("distortion -log2 p(x|z)", m.distortion_bits_per_dim),
            ("rate of the codes, learned prior", m.rate_bits_per_dim),
        ]
        if m.empirical_rate_bits_per_dim is not None:
            rows.append(
                ("rate of the same codes, empirical prior (the prior's training codes)", m.empirical_rate_bits_per_dim)
            )
        lines = [
            "## Codec: real .dqz files",
            "",
            f"The first {m.images:,} evaluated images compressed to files both ways, decompressed and "
            f"checked: {m.round_trips_verified}/{m.images} lossless round trips bit-exact; the payload is "
            f"{m.overhead:+.2%} off the ideal code length (ratio {self.ratio:.4f}).",
            "",
            "| bits/dim on the same images | value |",
            "|---|---|",
        ]
        lines += [f"| {label} | {value:.4f} |" for label, value in rows]
        lines += [
            "",
            f"Lossless: {m.compress_images_per_s:.1f} images/s compressing, "
            f"{m.decompress_images_per_s:.1f} decompressing ({m.threads} coder thread). Lossy (the codes "
            f"alone): {m.lossy_payload_bits_per_pixel:.3f} bits per pixel ({m.lossy_bits_per_pixel:.3f} with "
            f"the header), PSNR {m.lossy_psnr:.2f} dB; {m.lossy_compress_images_per_s:.1f} images/s "
            f"compressing, {m.lossy_decompress_images_per_s:.1f} decompressing.",
            "",
        ]
        lines += [
            f"- {r.fmt} at the nearest rate (quality {r.quality}, the images tiled into one file): "
            f"{r.bits_per_pixel:.3f} bits per pixel, PSNR {r.psnr:.2f} dB"
            for r in self.lossy_references
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "measurement": self.measurement.to_dict(),
            "png_bits_per_dim": self.png_bits_per_dim,
            "webp_lossless_bits_per_dim": self.webp_lossless_bits_per_dim,
            "lossy_references": [dataclasses.asdict(r) for r in self.lossy_references],
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CodecSection:
        if values.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(f"codec: expected schema version {SCHEMA_VERSION}, got {values.get('schema_version')!r}")
        try:
            return cls(
                CodecMeasurement.from_dict(values["measurement"]),
                values["png_bits_per_dim"],
                values["webp_lossless_bits_per_dim"],
                tuple(LossyPoint(**r) for r in values["lossy_references"]),
            )
        except (KeyError, TypeError) as err:
            raise SchemaError(f"codec: {type(err).__name__}: {err}") from None


def measure_section(
    model, prior: PriorModel, images: Tensor, *, codec: Codec | None = None, empirical: EmpiricalPrior | None = None
) -> tuple[CodecSection, list[bytes], list[bytes]]:
    """Measure the codec on ``images`` (uint8 (N, C, H, W)) and the Pillow references on the same
    images: (section, lossless files, lossy files). Raises if a lossless round trip differs."""
    measurement, lossless, lossy = measure_files(model, prior, images, codec=codec, empirical=empirical)
    rate = measurement.lossy_payload_bits_per_pixel  # the mosaic amortises the references' headers
    section = CodecSection(
        measurement,
        pillow_bits_per_dim(images, "PNG"),
        pillow_bits_per_dim(images, "WEBP"),
        tuple(pillow_lossy_at_rate(images, fmt, rate) for fmt in ("JPEG", "WEBP")),
    )
    return section, lossless, lossy


def codec_section(model, prior: LearnedPrior, images: Tensor, *, autoencoder_digest: str | None = None) -> CodecSection:
    """The section of ``depthq eval --codec``: ``prior`` is the evaluation's ``LearnedPrior``;
    ``autoencoder_digest`` the model's ``state_digest`` when already known."""
    codec = Codec(model, prior.model, autoencoder_digest=autoencoder_digest, prior_digest=prior.info.digest)
    return measure_section(model, prior.model, images, codec=codec, empirical=prior.info.empirical_prior())[0]
