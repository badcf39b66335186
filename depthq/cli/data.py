"""``depthq data info NAME``: a data set's size, shape, splits, source and cache.

Example::

    $ depthq data info photos --val-fraction 0.05
    $ depthq data info scenes               # needs the wallpaper packages (apt-get)
    $ depthq data info cifar10 --root ~/data
"""

from __future__ import annotations

import argparse

#: the data sets of ``depthq.data.DATASETS`` (named here so that ``--help`` needs no torch; a
#: test keeps the two equal)
DATASET_NAMES = ("cifar10", "fashion-mnist", "folder", "imagenet32", "imagenet64", "photos", "scenes")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its sub-commands to the top-level ``depthq`` sub-parsers."""
    data = subparsers.add_parser("data", help="inspect the data sets", description="Inspect the data sets.")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    commands.required = True
    info = commands.add_parser(
        "info",
        help="size, shape and splits of a data set",
        description="Read a data set (building its cache if needed) and print its size, shape, splits, "
        "dtype, source and cache location.",
    )
    info.add_argument("name", choices=DATASET_NAMES, help="the data set")
    info.add_argument(
        "--root",
        default=None,
        help="its folder (default: from $DEPTHQ_DATA; for scenes the folder "
        "holding the wallpapers' usr/share/, default $DEPTHQ_WALLPAPERS or /)",
    )
    info.add_argument(
        "--image-size", type=int, default=None, help="photos/scenes patch size / folder resize size (default 32)"
    )
    info.add_argument(
        "--val-fraction", type=float, default=0.0, help="share of the training split held out as val (default 0)"
    )
    info.add_argument("--seed", type=int, default=0, help="seed of the val hold-out")
    info.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    from depthq.data.info import info_text  # deferred: `depthq --help` stays free of torch

    print(
        info_text(args.name, root=args.root, image_size=args.image_size, val_fraction=args.val_fraction, seed=args.seed)
    )
    return 0
