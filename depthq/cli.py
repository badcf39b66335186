"""The ``depthq`` command line.

Each sub-package that owns a command group exposes ``register(subparsers)``; this module only
wires them together, so ``depthq --help`` lists every command. A ``DepthqError`` (a user error)
is printed as one line with exit status 2; any other exception is a bug and keeps its traceback;
``-v`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

from depthq.errors import DepthqError, data_errors

#: third-party warnings that say nothing to a depthq user (regexes matched at the message start)
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # raised inside lightning 2.6's pytree helper
    r"Total length of `list` across ranks is zero",  # val_fraction: 0 means no validation, on purpose
)
#: Lightning's INFO lines that are advertisements, not information
QUIET_MESSAGES = ("Tip: ", "💡 Tip")


class QuietThirdParty(logging.Filter):
    """Drops Lightning's banners and tips below WARNING unless ``verbose``; keeps depthq's lines."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("depthq"):
            return True
        message = record.getMessage()
        if any(message.lstrip().startswith(tip) for tip in QUIET_MESSAGES):
            return False
        return self.verbose or record.levelno >= logging.WARNING


def quiet_terminal(verbose: bool) -> None:
    """Logging to stderr at INFO (DEBUG with ``verbose``), third-party noise filtered."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, QuietThirdParty)]:
            handler.removeFilter(old)
        handler.addFilter(QuietThirdParty(verbose))
    # Lightning installs its own handler when it is imported before logging is configured; its
    # records then propagate to the root handlers above instead
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


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
