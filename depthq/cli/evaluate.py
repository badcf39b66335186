"""``depthq eval`` and ``depthq compare``."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthq.errors import UsageError


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
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default: RUN_DIR/eval-<split>)")
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


def run_eval(args) -> int:
    # deferred: `depthq --help` stays free of torch
    from depthq.evaluate.report import format_table
    from depthq.runs import write_eval

    report = write_eval(args.run_dir, options_from_args(args), args.out)
    print(format_table({Path(args.run_dir).name: report.result}))
    print(f"\n{report.evaluation.prior_note}")
    print(f"\nwrote {report.out}/eval.json, report.md and {', '.join(report.figures.values())}")
    return 0


def run_compare(args) -> int:
    from depthq.runs import compare_runs  # deferred: `depthq --help` stays free of torch

    comparison = compare_runs(args.run_dirs, args.out, options_from_args(args), names=args.names, reuse=not args.fresh)
    print(comparison.table)
    print(f"\nwrote {comparison.out}/compare.md, compare.json and mutual_information.png")
    return 0
