"""Codec anchors on the test splits: PNG, WebP lossless, JPEG and WebP on the very images a model
is evaluated on (``depthq.evaluate.anchors.measure_anchors``, Pillow's encoders only).

    python benchmarks/anchors.py [--sets photos scenes fashion-mnist] [--out PATH]

A set whose files are not on this machine (scenes without its Debian packages, fashion-mnist
without ``dataset-fashion-mnist``) is left out with a message. Writes a results file (default
``benchmarks/results/anchors.json``; ``docs/results/anchors.json`` is the published one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import PIL  # noqa: E402

from benchmarks.common import print_tables, write_results  # noqa: E402
from depthq.data import get_dataset  # noqa: E402
from depthq.evaluate.anchors import CodecAnchors, measure_anchors  # noqa: E402
from depthq.results import Table  # noqa: E402

#: bits per pixel at which the lossy curves are read
RATES = (0.25, 0.5, 1.0, 2.0)
SUMMARY = (
    "Standard codecs on the test split of each data set, the images a model is evaluated on: "
    '`measure_anchors(get_dataset(name, "test").images)`. `depthq eval` measures the same figures on '
    "whatever images it evaluates. Lossless sizes are bits per sub-pixel (bits/dim), one file per image "
    "or all images tiled into one mosaic (headers paid once). Lossy curves are a quality sweep on the "
    "tiled images, read at a rate in bits per pixel (8 x bytes / (N x H x W)); PSNR over all sub-pixels."
)


def _psnr(anchors: CodecAnchors, codec: str, rate: float) -> str:
    value = anchors.curve(codec).psnr_at(rate)
    return f"{value.value:.1f}{'*' if value.extrapolated else ''}"


def _best_jpeg(anchors: CodecAnchors, rate: float) -> str:
    _, value = anchors.best_psnr_at(rate)
    return f"{value.value:.1f}{'*' if value.extrapolated else ''}"


def tables(measured: dict[str, CodecAnchors]) -> list[Table]:
    lossless = []
    lossy = []
    for name, a in measured.items():
        what = f"{name} ({a.images:,} images, {a.channels}x{a.height}x{a.width})"
        png, webp = a.lossless_anchor("PNG"), a.lossless_anchor("WebP lossless")
        lossless.append(
            (
                what,
                f"{png.bits_per_dim:.2f}",
                f"{png.bits_per_dim_tiled:.2f}",
                f"{webp.bits_per_dim:.2f}",
                f"{webp.bits_per_dim_tiled:.2f}",
            )
        )
        jpeg = "JPEG 4:2:0" if a.channels == 3 else "JPEG"
        lossy.append(
            (
                what,
                " / ".join(_psnr(a, jpeg, r) for r in RATES),
                " / ".join(_best_jpeg(a, r) for r in RATES),
                " / ".join(_psnr(a, "WebP", r) for r in RATES),
            )
        )
    rates = " / ".join(f"{r:g}" for r in RATES)
    return [
        Table(
            "Lossless codecs on the test splits, bits/dim",
            (
                "test split",
                "PNG, one file per image",
                "PNG, tiled",
                "WebP lossless, one file per image",
                "WebP lossless, tiled",
            ),
            tuple(lossless),
            notes=(
                "PNG: `optimize=True`, zlib level 9. WebP lossless: quality 100, method 2 per file, method 5 tiled.",
            ),
        ),
        Table(
            f"Lossy codecs on the test splits: PSNR (dB) at {rates} bits per pixel",
            ("test split", "JPEG (4:2:0; greyscale: one curve)", "JPEG, the better subsampling", "WebP"),
            tuple(lossy),
            notes=(
                "\\* outside the measured range: clamped to the curve's end (below JPEG's lowest "
                "quality, the codec cannot go that low).",
                "JPEG with optimised Huffman tables at qualities 1-95; WebP method 6 at qualities "
                "0-100. Greyscale images go to WebP as RGB with equal channels, and the whole file "
                "is counted per greyscale sub-pixel.",
            ),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["photos", "scenes", "fashion-mnist"])
    parser.add_argument("--out", default="benchmarks/results/anchors.json")
    args = parser.parse_args(argv)
    measured: dict[str, CodecAnchors] = {}
    for name in args.sets:
        try:
            images = get_dataset(name, "test").images
        except (FileNotFoundError, ValueError) as err:
            print(f"{name}: left out ({str(err).splitlines()[0]})")
            continue
        measured[name] = measure_anchors(images)
        print(f"{name}: {len(images):,} images in {measured[name].seconds:.0f} s", flush=True)
    if not measured:
        parser.error("no data set could be read")
    out_tables = tables(measured)
    print()
    print_tables(out_tables)
    data = {name: a.to_dict() for name, a in measured.items()}
    path = write_results(
        args.out,
        title="Codec anchors on the test splits",
        tables=out_tables,
        data=data,
        summary=SUMMARY,
        versions={"Pillow": PIL.__version__},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
