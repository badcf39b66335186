"""``depthq prior train`` and ``depthq sample``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from depthq.errors import MissingFileError, UsageError

RESUMABLE_OVERRIDES = ("train.steps",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prior",
        help="a learned prior over a trained model's codes",
        description="Train an autoregressive prior over the codes of a trained run.",
    )
    commands = p.add_subparsers(dest="prior_command", metavar="COMMAND")
    commands.required = True
    t = commands.add_parser(
        "train",
        help="train a prior on the codes of RUN_DIR's training split",
        description="Encode the run's training and val splits once (cached), train a causal transformer "
        "over the codes, and report its validation rate next to the empirical prior's. "
        "Writes RUN_DIR/prior/ (or --out).",
    )
    t.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `depthq train`")
    t.add_argument("--out", help="the prior's folder (default: RUN_DIR/prior)")
    t.add_argument("--config", "-c", help="YAML with prior: and train: sections (default: the defaults)")
    t.add_argument("--steps", type=int, help="same as --set train.steps=N")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set prior.layers=6 or --set train.lr=3e-4 (repeatable)",
    )
    t.add_argument(
        "--weights", default="model.safetensors", help="which weights of the run to model (default: model.safetensors)"
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the prior in --out (or RUN_DIR/prior) from its last checkpoint; only --steps may change",
    )
    t.set_defaults(func=run_train)

    s = sub.add_parser(
        "sample",
        help="draw images from a run's learned prior (a PNG grid)",
        description="Draw codes from the prior (step by step, with a key/value cache), "
        "decode them with the autoencoder and write a PNG grid.",
    )
    s.add_argument("run_dir", metavar="RUN_DIR", help="a run directory with a trained prior (RUN_DIR/prior)")
    s.add_argument("--n", type=int, default=64, help="images to draw (default 64)")
    s.add_argument("--temperature", type=float, default=1.0, help="divides the prior's logits (default 1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    s.add_argument("--out", help="PNG file (default: the prior's folder/samples.png)")
    s.add_argument(
        "--pixels",
        choices=("mean", "sample"),
        default="mean",
        help="decode to the mean of p(x|z) (default) or to a sample of it",
    )
    s.add_argument("--prior", help="the prior's folder (default: RUN_DIR/prior)")
    s.add_argument("--weights", default="model.safetensors", help="the run's weights file")
    s.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    s.set_defaults(func=run_sample)


def run_train(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch
    from depthq.prior.config import load_prior_config
    from depthq.prior.train import CHECKPOINT
    from depthq.runs import train_prior
    from depthq.runtime import is_main_process

    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    out = Path(args.out) if args.out else Path(args.run_dir) / "prior"
    if args.resume:
        refused = [o for o in overrides if o.split("=", 1)[0].strip() not in RESUMABLE_OVERRIDES]
        if refused or args.config:
            raise UsageError(
                f"--resume continues the saved config {out / 'config.yaml'}; only --steps may "
                f"change (got {', '.join(refused) or '--config'})"
            )
        if not (out / CHECKPOINT).is_file():
            raise MissingFileError(f"cannot resume: {out / CHECKPOINT} not found")
        config = load_prior_config(out / "config.yaml", overrides)
    else:
        config = load_prior_config(args.config, overrides)
    summary = train_prior(args.run_dir, config, out=out, weights=args.weights, resume=args.resume)
    if is_main_process():  # under DDP, rank 0 alone reports
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The prior's validation rate next to the reference priors', labelled."""
    val, dims = summary["validation"], summary["dims"]
    learned, empirical, uniform = (
        val["bits_per_image"],
        summary["empirical_bits_per_image"],
        summary["uniform_bits_per_image"],
    )
    rows = [
        ("learned prior (this model, teacher-forced NLL)", learned),
        (f"empirical prior ({summary['empirical_prior']})", empirical),
        ("uniform prior (positions x M x log2 K)", uniform),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"prior: {summary['prior_dir']}  ({summary['order']} order, {summary['steps']} steps in "
        f"{summary['train_seconds']:.0f} s, {summary['parameters']:,} parameters, {summary['precision']})",
        f"rate of the codes on {val['images']:,} held-out val images of {summary['data']} ({dims} dims each):",
    ]
    lines += [f"  {label:<{width}}  {bits:9.1f} bits per image  {bits / dims:.4f} bits/dim" for label, bits in rows]
    lines.append(f"  learned / empirical: {learned / empirical:.1%}")
    lines.append(f"load it with: depthq.prior.load_prior({str(summary['run_dir'])!r})")
    return "\n".join(lines)


def run_sample(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch
    from depthq.images import make_grid, save_png
    from depthq.runs import SavedRun, sample

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UsageError(f"--temperature must be a finite number > 0, got {args.temperature}")
    run = SavedRun.open(args.run_dir, weights=args.weights, device=args.device)
    drawn = sample(run, args.n, prior=args.prior, temperature=args.temperature, seed=args.seed, pixels=args.pixels)
    out = Path(args.out) if args.out else drawn.info.folder / "samples.png"
    cols = math.ceil(math.sqrt(args.n))
    images = drawn.images
    save_png(make_grid([images[i : i + cols] for i in range(0, args.n, cols)], scale=2), out)
    seconds = drawn.prior_seconds + drawn.decode_seconds
    size = drawn.info.image_size
    print(
        f"{args.n} samples ({size}x{size}, temperature {args.temperature:g}, pixels: {args.pixels} of p(x|z)) -> {out}"
    )
    print(
        f"{args.n / seconds:.1f} samples/s on {args.device} ({drawn.steps} prior steps per image with the "
        f"key/value cache: {drawn.prior_seconds:.2f} s; decoding: {drawn.decode_seconds:.2f} s)"
    )
    return 0
