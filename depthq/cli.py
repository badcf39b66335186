"""The ``depthq`` command line.

Each sub-package that owns a command group exposes ``register(subparsers)``; this module only
wires them together, so ``depthq --help`` lists every command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from depthq import __version__, demo
    from depthq.codec import cli as codec_cli
    from depthq.data import cli as data_cli
    from depthq.evaluate import cli as eval_cli
    from depthq.experiments import capacity
    from depthq.experiments import cli as experiment_cli
    from depthq.prior import cli as prior_cli
    from depthq.train import cli as train_cli

    parser = argparse.ArgumentParser(
        prog="depthq",
        description="Depthwise Quantization: quantizers, DQ-AE / VQ-VAE training, evaluation, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"depthq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    data_cli.register(sub)
    train_cli.register(sub)
    demo.register(sub)
    eval_cli.register(sub)
    capacity.register(sub)
    experiment_cli.register(sub)
    prior_cli.register(sub)  # `prior train`, `sample`
    codec_cli.register(sub)  # `compress`, `decompress`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # Lightning's start-up banners and tips drown the progress bar
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        # Library errors carry a message meant for the user; no traceback for those.
        print(f"depthq: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
