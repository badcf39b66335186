"""The ``depthq`` command line: one module per command group, wired together here.

Each module of this package owns a command group and exposes ``register(subparsers)``; this one
only wires them, so ``depthq --help`` lists every command. The command modules import only
argparse and light modules at module level: the work (torch, Lightning, the models) is imported
inside each handler, so that ``depthq --help`` and a wrong flag answer at once.

A ``DepthqError`` (a user error) is printed as one line with exit status 2; any other exception
is a bug and keeps its traceback; ``-v`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from depthq.cli import capacity, codec, data, demo, evaluate, experiment, prior, train
from depthq.errors import DepthqError
from depthq.terminal import quiet_terminal
from depthq.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthq",
        description="Depthwise Quantization: quantizers, DQ-AE / VQ-VAE training, evaluation, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"depthq {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level, show third-party messages and the traceback of every error",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (data, train, demo, evaluate, capacity, experiment, prior, codec):
        group.register(sub)  # evaluate: `eval`, `compare`; prior: `prior train`, `sample`; codec: `compress`, ...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_terminal(args.verbose)
    try:
        return int(args.func(args) or 0)
    except DepthqError as err:
        if args.verbose:
            traceback.print_exc()
        print(f"depthq: error: {err}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
