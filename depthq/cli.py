"""The ``depthq`` command line.

Each sub-package that owns a command group exposes ``register(subparsers)``; this module only
wires them together, so ``depthq --help`` lists every command. A ``DepthqError`` (a user error)
is printed as one line with exit status 2; any other exception is a bug and keeps its traceback;
``-v`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import functools
import sys
import traceback
from collections.abc import Callable, Sequence

from depthq.errors import DepthqError, data_errors
from depthq.terminal import quiet_terminal


def _legacy_user_errors(func: Callable) -> Callable:
    """For command groups whose code still raises plain ValueError / FileNotFoundError for user
    input (``depthq data``, the static-prior experiment): treat those as user errors.
    Remove once they raise ``depthq.errors`` classes."""

    @functools.wraps(func)
    def wrapped(args):
        with data_errors():
            return func(args)

    return wrapped


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, child in action.choices.items()
    }


def _adopt_legacy(parser: argparse.ArgumentParser | None) -> None:
    if parser is None:
        return
    for child in _subcommands(parser).values():
        _adopt_legacy(child)
    func = parser.get_default("func")
    if func is not None:
        parser.set_defaults(func=_legacy_user_errors(func))


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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level, show third-party messages and the traceback of every error",
    )
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
    _adopt_legacy(sub.choices["data"])
    _adopt_legacy(_subcommands(sub.choices["experiment"]).get("static-prior"))
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
