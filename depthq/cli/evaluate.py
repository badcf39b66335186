"""``depthq eval`` and ``depthq compare``."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthq.errors import UsageError
from depthq.limits import DEFAULT_MAX_PIXELS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="evaluate on this data set instead of the run's own")
    p.add_argument("--root", help="folder of that data set")
    p.add_argument(
        "--split", default="test", choices=["test", "val", "train"], help="split to evaluate (default: test)"
    )
    p.add_argument(
        "--weights",
        default="model.safetensors",
        help="weights file in the run directory (model.safetensors or best.safetensors)",
    )
    p.add_argument(
        "--prior-images",
        type=int,
        default=8192,
        help="training images used to fit the empirical prior (0: no empirical prior)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", default="32", choices=["32", "bf16"], help="evaluation precision")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--correction",
        default="none",
        choices=["none", "miller-madow"],
        help="estimator of the entropies, MI and information: plug-in or Miller-Madow",
    )
    p.add_argument(
        "--no-prior",
        action="store_true",
        help="no learned prior (default: the run's own RUN_DIR/prior when trained for these weights)",
    )
    p.add_argument(
        "--no-anchors",
        action="store_true",
        help="skip PNG, WebP and JPEG on the evaluated images (measured once per image set, cached)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run: bits/dim, usage, entropy, MI, figures",
        description="Stream a split through a trained run once and write eval.json, "
        "report.md and figures (MI matrix, entropy maps, reconstructions, hierarchy, "
        "training curves) to RUN_DIR/eval-<split>/ (or --out).",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="the run folder; with --full-resolution, one or more (each run is one rate point of the curve)",
    )
    p.add_argument(
        "--out", help="output folder (default: RUN_DIR/eval-<split>; with --full-resolution RUN_DIR/eval-full-<FOLDER>)"
    )
    _common(p)
    p.add_argument(
        "--prior",
        metavar="PATH",
        help="the learned prior's folder, refused if trained for other weights "
        "or another image size (default: RUN_DIR/prior when trained for these weights)",
    )
    p.add_argument(
        "--codec",
        action="store_true",
        help="also compress the first --codec-images evaluated images to real .dqz files (needs a "
        "learned prior) and report their sizes, round trips and speed",
    )
    p.add_argument("--codec-images", type=int, default=100, metavar="N", help="images for --codec (default 100)")
    full = p.add_argument_group(
        "full resolution",
        "--full-resolution FOLDER: rate-distortion on the folder's whole images (no resize, no crop) in "
        "CompressAI's results files, with JPEG and WebP on the same images, BD-rate, lossless bits/dim next to "
        "PNG and WebP, and a plot; every run needs its learned prior. Of the options above, --out, --weights "
        "and --device apply.",
    )
    full.add_argument("--full-resolution", metavar="FOLDER", help="evaluate on the whole images of FOLDER")
    full.add_argument("--max-images", type=int, metavar="N", help="the first N images of FOLDER (sorted by path)")
    full.add_argument("--name", default="depthq", help="the curve's name in the results files (default depthq)")
    full.add_argument("--no-lossless", action="store_true", help="skip the lossless round trips")
    full.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (the slow metric on large images)")
    full.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"the largest image (H*W) read and coded (default {DEFAULT_MAX_PIXELS})",
    )
    full.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.set_defaults(func=run_eval)

    c = sub.add_parser(
        "compare",
        help="compare several runs in one table and one MI figure",
        description="Evaluate runs (or reuse their eval-<split>/eval.json) and write one "
        "table (compare.md, compare.json) and one figure of their MI matrices.",
    )
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--out", default="results/compare", help="output folder")
    c.add_argument("--names", nargs="+", help="column names (default: the run folders' names)")
    c.add_argument("--fresh", action="store_true", help="re-evaluate even if eval.json exists")
    _common(c)
    c.set_defaults(func=run_compare)


def options_from_args(args: argparse.Namespace):
    """The ``EvalOptions`` of the command line (validated there)."""
    import torch  # deferred: `depthq --help` stays free of torch

    from depthq.evaluate.result import EvalOptions

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    explicit = getattr(args, "prior", None)
    if explicit and args.no_prior:
        raise UsageError("give --prior PATH or --no-prior, not both")
    codec = getattr(args, "codec", False)
    if codec and args.codec_images < 1:
        raise UsageError(f"--codec-images must be >= 1, got {args.codec_images}")
    return EvalOptions(
        split=args.split,
        weights=args.weights,
        prior_images=args.prior_images,
        batch_size=args.batch_size,
        precision=args.precision,
        correction=args.correction,
        device=device,
        data=args.data,
        root=args.root,
        prior=None if args.no_prior else explicit or "auto",
        anchors=not args.no_anchors,
        codec_images=args.codec_images if codec else 0,
    )


def run_full_resolution(args) -> int:
    import torch  # deferred: `depthq --help` stays free of torch

    from depthq.runs.full_resolution import evaluate_full_resolution, format_summary

    folder = Path(args.full_resolution)
    out = args.out or Path(args.run_dirs[0]) / f"eval-full-{folder.name or 'images'}"
    result = evaluate_full_resolution(
        args.run_dirs,
        folder,
        out,
        name=args.name,
        weights=args.weights,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        lossless=not args.no_lossless,
        ms_ssim=not args.no_ms_ssim,
        force=args.force,
    )
    print(format_summary(result))
    print(f"\nwrote {result.out}/: CompressAI results files, per-image/, summary.json, {result.figure.name}")
    return 0


def run_eval(args) -> int:
    if args.full_resolution:
        return run_full_resolution(args)
    if len(args.run_dirs) != 1:
        raise UsageError(f"give one RUN_DIR (several only with --full-resolution); got {len(args.run_dirs)}")
    if args.max_images is not None or args.no_lossless or args.no_ms_ssim or args.force or args.name != "depthq":
        raise UsageError("--max-images, --name, --no-lossless, --no-ms-ssim and --force belong to --full-resolution")
    # deferred: `depthq --help` stays free of torch
    from depthq.evaluate.report import format_table
    from depthq.runs import write_eval

    [run_dir] = args.run_dirs
    report = write_eval(run_dir, options_from_args(args), args.out)
    print(format_table({Path(run_dir).name: report.result}))
    print(f"\n{report.evaluation.prior_note}")
    print(f"\nwrote {report.out}/eval.json, report.md and {', '.join(report.figures.values())}")
    return 0


def run_compare(args) -> int:
    from depthq.runs import compare_runs  # deferred: `depthq --help` stays free of torch

    comparison = compare_runs(args.run_dirs, args.out, options_from_args(args), names=args.names, reuse=not args.fresh)
    print(comparison.table)
    print(f"\nwrote {comparison.out}/compare.md, compare.json and mutual_information.png")
    return 0
