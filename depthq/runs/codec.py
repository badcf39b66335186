"""The codec of a run folder: ``depthq compress`` and ``depthq decompress`` on a ``SavedRun``.

``codec_of(run)`` builds the ``Codec`` from the run's model and learned prior, with the digests
the run already holds (no second hash of the weights). ``compress_split`` compresses a split of
the run's own data set both ways, checks every round trip and measures the files against PNG
and WebP (the ``codec`` section's figures).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from depthq.atomic import write_bytes, write_json
from depthq.codec.coder import Codec
from depthq.codec.format import DEFAULT_MAX_PIXELS, EXTENSION
from depthq.codec.section import CodecSection, measure_section
from depthq.errors import RunDirError, UsageError
from depthq.prior.io import PriorInfo
from depthq.runs.saved import SavedRun


@dataclass
class RunCodec:
    """A run's codec and the prior it codes the codes with."""

    codec: Codec
    info: PriorInfo


def codec_of(
    run: SavedRun,
    prior: str | os.PathLike | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
) -> RunCodec:
    """The ``Codec`` of a run and its learned prior (``prior``: its folder, default the run's own);
    ``max_pixels`` and ``progress`` as ``Codec`` takes them."""
    codes_prior, info = run.prior(prior)
    codec = Codec(
        run.model,
        codes_prior,
        max_pixels=max_pixels,
        progress=progress,
        autoencoder_digest=run.digest,
        prior_digest=info.digest,
    )
    return RunCodec(codec, info)


@dataclass
class SplitCompression:
    """What ``compress_split`` wrote and measured."""

    section: CodecSection
    out: Path
    data: str
    images: int


def compress_split(
    run: SavedRun,
    split: str,
    *,
    out: str | os.PathLike | None = None,
    max_images: int | None = None,
    force: bool = False,
    prior: str | os.PathLike | None = None,
) -> SplitCompression:
    """Compress ``split`` of the run's data set (its first ``max_images``) both ways into
    ``out`` (default ``RUN_DIR/codec-<split>``: ``lossless/``, ``lossy/`` and ``summary.json``),
    decompress and check every file, and measure them next to PNG and WebP."""
    if max_images is not None and max_images < 1:
        raise UsageError(f"--max-images must be >= 1, got {max_images}")
    out = Path(out) if out is not None else run.run_dir / f"codec-{split}"
    if out.exists() and any(out.iterdir()) and not force:
        raise RunDirError(f"{out} exists and is not empty (pass --force, or another --out)")
    coder = codec_of(run, prior)
    data = run.run_data
    images = data.images(split).images
    if max_images is not None:
        images = images[:max_images]
    section, lossless, lossy = measure_section(
        run.model, coder.codec.prior, images, codec=coder.codec, empirical=coder.info.empirical_prior()
    )
    for folder, files in (("lossless", lossless), ("lossy", lossy)):
        for i, blob in enumerate(files):
            write_bytes(out / folder / f"{split}_{i:05d}{EXTENSION}", blob)
    figures = section.to_dict()
    write_json(
        out / "summary.json",
        {
            "run_dir": str(run.run_dir),
            "data": data.name,
            "split": split,
            "images": len(images),
            "codec": figures.pop("measurement"),
            **figures,
        },
    )
    return SplitCompression(section, out, data.name, len(images))
