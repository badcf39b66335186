"""``depthq compress`` and ``depthq decompress``: ``.dqz`` files from a run and its prior."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from depthq.errors import MissingFileError, RunDirError, UsageError
from depthq.limits import DEFAULT_MAX_PIXELS, PEAK_BYTES_PER_PIXEL

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compress",
        help="entropy-code images into .dqz files with a run's model and prior",
        description="Compress images of any size (PNG, JPEG, WebP...; depthq.codec.images says which modes are "
        "converted and which refused) into .dqz files: "
        "lossless (the codes under the learned prior, then the pixels under p(x|z)) or --lossy (the codes "
        "alone). With --split, compress a split of the run's data set, verify every round trip and write "
        "a summary with the measured sizes next to PNG and WebP.",
    )
    c.add_argument("run_dir", metavar="RUN_DIR", help="a run directory with a trained prior (RUN_DIR/prior)")
    c.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, WebP, ...)")
    c.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="compress this split of the run's data set instead (one file per image, and summary.json)",
    )
    c.add_argument("--max-images", type=int, help="with --split: the first N images only")
    c.add_argument("--lossy", action="store_true", help="store the codes only (decoded to the mean of p(x|z))")
    c.add_argument("--out", help="output folder (default: next to each image; with --split RUN_DIR/codec-<split>)")
    c.add_argument("--force", action="store_true", help="overwrite existing output files")
    _model_flags(c)
    c.set_defaults(func=run_compress)

    d = sub.add_parser(
        "decompress",
        help="decode .dqz files to PNG",
        description="Decode .dqz files written by `depthq compress` with the same run and prior.",
    )
    d.add_argument("run_dir", metavar="RUN_DIR", help="the run directory the files were made with")
    d.add_argument("files", nargs="+", metavar="FILE", help=".dqz files")
    d.add_argument("--out", help="output folder (default: next to each file)")
    d.add_argument("--force", action="store_true", help="overwrite existing PNG files")
    _model_flags(d)
    d.set_defaults(func=run_decompress)


def _model_flags(p: argparse.ArgumentParser) -> None:

    p.add_argument("--weights", default="model.safetensors", help="the run's weights file")
    p.add_argument("--prior", help="the prior's folder (default: RUN_DIR/prior)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"largest image (height x width) to code (default {DEFAULT_MAX_PIXELS:,}); a file claiming more is "
        f"refused before anything is decoded. Coding costs about {PEAK_BYTES_PER_PIXEL} bytes of memory per pixel "
        "and time in proportion to the pixels (about 10 s per megapixel on 2 CPU cores with the demo model)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar for large images")


def _run_codec(args):
    # deferred: `depthq --help` stays free of torch
    from depthq.runs import SavedRun, codec_of

    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    run = SavedRun.open(args.run_dir, weights=args.weights)
    codec = codec_of(run, args.prior, max_pixels=args.max_pixels, progress=False if args.no_progress else None)
    return run, codec.codec


def _target(source: Path, out: str | None, suffix: str, force: bool) -> Path:
    path = (Path(out) if out else source.parent) / (source.stem + suffix)
    if path.exists() and not force:
        raise RunDirError(f"{path} exists (pass --force to overwrite it)")
    return path


def run_compress(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch (depthq.codec imports it)
    from depthq.atomic import write_bytes
    from depthq.codec.format import EXTENSION
    from depthq.codec.images import read_image

    if bool(args.images) == bool(args.split):
        raise UsageError("give image files or --split, not both (and not neither)")
    if args.split:
        return _compress_split(args)
    codec = _run_codec(args)[1]
    for name in args.images:
        source = Path(name)
        target = _target(source, args.out, EXTENSION, args.force)
        image = read_image(source, codec.channels, max_pixels=codec.max_pixels)
        (data,) = codec.compress([image], lossy=args.lossy)
        write_bytes(target, data)
        dims = image.numel()
        print(
            f"{source} -> {target}: {len(data):,} bytes, {8 * len(data) / dims:.3f} bits/dim "
            f"({'lossy' if args.lossy else 'lossless'}, header included)"
        )
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch (depthq.codec imports it)
    from depthq.codec.format import CodecError
    from depthq.images import save_png

    codec = _run_codec(args)[1]
    for name in args.files:
        source = Path(name)
        target = _target(source, args.out, ".png", args.force)
        if not source.is_file():
            raise MissingFileError(f"{source} not found")
        try:
            (image,) = codec.decompress([source.read_bytes()])
        except CodecError as err:
            raise CodecError(f"{source}: {err}") from None
        save_png(image.permute(1, 2, 0).squeeze(-1) if image.shape[0] == 1 else image.permute(1, 2, 0), target)
        print(f"{source} -> {target}: {image.shape[1]}x{image.shape[2]}")
    return 0


def _compress_split(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch (depthq.codec imports it)
    from depthq.runs import SavedRun, compress_split
    from depthq.tables import markdown_table

    run = SavedRun.open(args.run_dir, weights=args.weights)
    data = run.run_data
    print(
        f"compressing {args.max_images or 'all'} {data.name} {args.split} images both ways, decompressing and "
        "checking every file ..."
    )
    done = compress_split(run, args.split, out=args.out, max_images=args.max_images, force=args.force, prior=args.prior)
    section = done.section
    m = section.measurement
    rows = [
        ["learned prior total (ideal code length: -log2 p(z) - log2 p(x|z))", f"{m.model_bits_per_dim:.4f}"],
        [
            f"depthq lossless files, payload (header of {m.header_bytes} bytes excluded)",
            f"{m.lossless_payload_bits_per_dim:.4f}",
        ],
        ["depthq lossless files, whole file", f"{m.lossless_bits_per_dim:.4f}"],
        ["PNG (Pillow, level 9, one file per image)", f"{section.png_bits_per_dim:.4f}"],
        ["WebP lossless (Pillow, method 6, one file per image)", f"{section.webp_lossless_bits_per_dim:.4f}"],
        ["  distortion -log2 p(x|z) (paper convention)", f"{m.distortion_bits_per_dim:.4f}"],
        ["  rate of the codes, learned prior", f"{m.rate_bits_per_dim:.4f}"],
    ]
    if m.empirical_rate_bits_per_dim is not None:
        rows.append(
            [
                "  rate of the same codes, empirical prior (training-code frequencies, add-one)",
                f"{m.empirical_rate_bits_per_dim:.4f}",
            ]
        )
    print(markdown_table(["bits/dim on the same images", "value"], rows))
    if m.empirical_rate_bits_per_dim:
        print(
            f"rate of the codes: learned {m.rate_bits_per_dim * m.dims:.1f} bits per image, empirical "
            f"{m.empirical_rate_bits_per_dim * m.dims:.1f} ({m.rate_bits_per_dim / m.empirical_rate_bits_per_dim:.1%})"
        )
    print(
        f"lossless: {m.round_trips_verified}/{m.images} round trips bit-exact; payload {m.overhead:+.2%} vs the "
        f"ideal code length; {m.compress_images_per_s:.1f} images/s compressing, "
        f"{m.decompress_images_per_s:.1f} decompressing ({m.threads} thread)"
    )
    print(
        f"lossy (codes only): {m.lossy_bits_per_pixel:.3f} bits per pixel with the header "
        f"({m.lossy_payload_bits_per_pixel:.3f} without), PSNR {m.lossy_psnr:.2f} dB; "
        f"{m.lossy_compress_images_per_s:.1f} images/s compressing, {m.lossy_decompress_images_per_s:.1f} decompressing"
    )
    for r in section.lossy_references:
        print(
            f"  {r.fmt} at the nearest rate (quality {r.quality}, all images tiled into one file): "
            f"{r.bits_per_pixel:.3f} bits per pixel, PSNR {r.psnr:.2f} dB"
        )
    print(f"files and summary.json: {done.out}")
    return 0
