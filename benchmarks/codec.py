"""Codec speed and size on whole photographs: depthq's .dqz (lossless and lossy) next to PNG and
lossless WebP on the same images, in one process.

    python benchmarks/codec.py [--run-dir RUN] [--images astronaut chelsea coffee rocket]
                               [--folder DIR] [--reps 3] [--threads N] [--out PATH]

The images are scikit-image's bundled colour photographs, used whole (astronaut is the 512x512
of the codec's speed goal), or every image of ``--folder``. ``--run-dir`` names a trained run
with its learned prior (``depthq train`` then ``depthq prior train``); without it the demo's
network and the default prior at the demo's tile size are built with random weights: their
times are the real network's and coder's (the work does not depend on the weights' values),
but their file sizes mean nothing and the table leaves them out.

Per image, each repetition runs every codec once (round-robin): encode from memory, then
decode from memory; times are wall clock, medians over the repetitions. PNG: Pillow's
``optimize=True``; WebP lossless: quality 100, method 4 (Pillow's default effort). Every
depthq lossless round trip is checked bit for bit. Writes a results file (default
``benchmarks/results/codec.json``; ``docs/results/codec.json`` is the published one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import PIL  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import print_tables, write_results  # noqa: E402
from depthq.codec.coder import Codec  # noqa: E402
from depthq.codec.images import read_image  # noqa: E402
from depthq.data.folder import list_images  # noqa: E402
from depthq.evaluate.anchors import decode, encode, pil_image  # noqa: E402
from depthq.models import HierarchicalAutoencoder, preset  # noqa: E402
from depthq.prior import CodeLayout, PriorConfig, PriorModel  # noqa: E402
from depthq.results import Table  # noqa: E402
from depthq.runs import SavedRun, codec_of  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
GOAL_SECONDS = 3.0  # issue 21: a 512x512 photo in at most 3 s each way on 2 cores
GOAL_IMAGE = "astronaut"


def skimage_photo(name: str) -> torch.Tensor:
    from skimage import data as skdata

    if not hasattr(skdata, name):
        raise SystemExit(f"scikit-image has no photograph {name!r}; try {', '.join(PHOTOS)}")
    array = getattr(skdata, name)()
    if array.ndim != 3 or array.shape[2] != 3:
        raise SystemExit(f"scikit-image's {name} is not an RGB photograph (shape {array.shape})")
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def build_codec(run_dir: str | None) -> tuple[Codec, str, bool]:
    """The codec, what it is, and whether its file sizes mean something (trained weights)."""
    if run_dir is not None:
        run = SavedRun.open(run_dir)
        coder = codec_of(run, progress=False)
        return coder.codec, f"the run {run_dir} ({run.weights}, prior {coder.info.digest[:12]})", True
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(preset("demo")).eval()
    tile = model.config.image_size
    prior = PriorModel(CodeLayout.of(model.config, tile), PriorConfig()).eval()
    what = f"the demo's network and default prior, random weights (tile {tile})"
    return Codec(model, prior, progress=False), what, False


def pillow_codec(options: dict) -> tuple[Callable, Callable]:
    def enc(x: torch.Tensor) -> bytes:
        return encode(pil_image(x.permute(1, 2, 0).numpy()), **options)

    return enc, decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="a trained run with its prior (default: the demo's network, random)")
    parser.add_argument("--images", nargs="+", default=list(PHOTOS), help="scikit-image photographs")
    parser.add_argument("--folder", help="every image of this folder instead")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/codec.json")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    codec, what, trained = build_codec(args.run_dir)
    if args.folder:
        paths = list_images(Path(args.folder))
        images = {p.stem: read_image(p, codec.channels) for p in paths}
    else:
        images = {name: skimage_photo(name) for name in args.images}
    png_enc, png_dec = pillow_codec({"format": "PNG", "optimize": True})
    webp_enc, webp_dec = pillow_codec({"format": "WEBP", "lossless": True, "quality": 100, "method": 4})
    codecs: dict[str, tuple[Callable, Callable]] = {
        "depthq lossless": (lambda x: codec.compress([x])[0], lambda b: codec.decompress([b])[0]),
        "depthq lossy": (lambda x: codec.compress([x], lossy=True)[0], lambda b: codec.decompress([b])[0]),
        "PNG": (png_enc, png_dec),
        "WebP lossless": (webp_enc, webp_dec),
    }
    data: dict[str, dict] = {}
    for name, x in images.items():
        c, h, w = x.shape
        samples: dict[str, dict[str, list[float]]] = {k: {"encode": [], "decode": []} for k in codecs}
        sizes: dict[str, int] = {}
        for rep in range(args.reps):
            for label, (enc, dec) in codecs.items():
                start = time.perf_counter()
                blob = enc(x)
                samples[label]["encode"].append(time.perf_counter() - start)
                start = time.perf_counter()
                back = dec(blob)
                samples[label]["decode"].append(time.perf_counter() - start)
                sizes[label] = len(blob)
                if label == "depthq lossless" and not torch.equal(back, x):
                    raise SystemExit(f"{name}: the lossless round trip is not exact")
            print(f"{name} ({w}x{h}): repetition {rep + 1}/{args.reps} done", flush=True)
        data[name] = {
            "height": h,
            "width": w,
            "channels": c,
            "bytes": sizes,
            "seconds": samples,
            "median_seconds": {k: {s: statistics.median(v) for s, v in t.items()} for k, t in samples.items()},
        }
    tables = make_tables(data, what, trained, args.reps)
    print()
    print_tables(tables)
    path = write_results(
        args.out,
        title="Codec speed and size on whole photographs",
        tables=tables,
        data={"codec": what, "trained": trained, "reps": args.reps, "threads": torch.get_num_threads(), "images": data},
        summary=(
            "depthq's .dqz files (lossless: the codes under the learned prior, then the pixels under "
            "p(x|z); lossy: the codes only) next to PNG and lossless WebP on the same whole images, timed "
            "round-robin in one process (`benchmarks/codec.py`). The goal: a 512x512 photograph "
            f"in at most {GOAL_SECONDS:g} s each way on 2 CPU cores with the demo's network."
        ),
        versions={"Pillow": PIL.__version__},
    )
    print(f"wrote {path}")
    return 0


def make_tables(data: dict[str, dict], what: str, trained: bool, reps: int) -> list[Table]:
    rows = []
    for name, d in data.items():
        h, w, c = d["height"], d["width"], d["channels"]
        med = d["median_seconds"]
        for label in med:
            nbytes = d["bytes"][label]
            if label.startswith("depthq") and not trained:
                size = "-"
            elif label == "depthq lossy":
                size = f"{8 * nbytes / (h * w):.3f} bpp"
            else:
                size = f"{8 * nbytes / (c * h * w):.3f}"
            mpx = h * w / 1e6
            enc, dec = med[label]["encode"], med[label]["decode"]
            rows.append(
                (
                    f"{name} ({w}x{h})",
                    label,
                    f"{enc:.3f}",
                    f"{dec:.3f}",
                    f"{mpx / enc:.2f} / {mpx / dec:.2f}",
                    size,
                    f"{enc / med['PNG']['encode']:.1f}x / {dec / med['PNG']['decode']:.1f}x",
                )
            )
    notes = [
        f"The model: {what}. Medians of {reps} repetitions; seconds per image from memory to memory.",
        "bits/dim: 8 x bytes / (C x H x W) of the whole file; the lossy file in bits per pixel (8 x bytes / (H x W)).",
    ]
    if not trained:
        notes.append("Random weights: times only (file sizes of an untrained model mean nothing).")
    if GOAL_IMAGE in data:
        med = data[GOAL_IMAGE]["median_seconds"]["depthq lossless"]
        met = max(med["encode"], med["decode"]) <= GOAL_SECONDS
        notes.append(
            f"Goal ({GOAL_IMAGE}, lossless, at most {GOAL_SECONDS:g} s each way): "
            f"{med['encode']:.2f} s / {med['decode']:.2f} s: {'met' if met else 'not met'} on this machine."
        )
    return [
        Table(
            "Whole photographs: seconds to encode and decode, and file size",
            ("image", "codec", "encode s", "decode s", "megapixels/s (enc / dec)", "bits/dim",
             "time vs PNG (enc / dec)"),  # fmt: skip
            tuple(rows),
            notes=tuple(notes),
        )
    ]


if __name__ == "__main__":
    raise SystemExit(main())
