"""The ``depthq data`` command group: ``depthq data info NAME`` prints a data set's facts.

Example::

    $ depthq data info photos --val-fraction 0.05
    $ depthq data info scenes               # needs the wallpaper packages (apt-get)
    $ depthq data info cifar10 --root ~/data
"""

from __future__ import annotations

import argparse
from typing import Any

from depthq.data import cache
from depthq.data.imageset import ImageSet
from depthq.data.patches import PatchSet
from depthq.data.photos import PHOTOS, photo_patches
from depthq.data.registry import DATASETS, get_dataset
from depthq.data.scenes import scene_images, scene_patches


def register(subparsers: Any) -> None:
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
    info.add_argument("name", choices=sorted(DATASETS), help="the data set")
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


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def info_text(args: argparse.Namespace) -> str:
    """The report ``depthq data info`` prints."""
    splits = ("train", "val", "test") if args.val_fraction > 0 else ("train", "test")
    sets: dict[str, ImageSet] = {
        split: get_dataset(
            args.name, split, root=args.root, image_size=args.image_size, val_fraction=args.val_fraction, seed=args.seed
        )
        for split in splits
    }
    first = sets["train"]
    _, c, h, w = first.shape
    total = sum(len(s) for s in sets.values())
    facts = [
        ("data set", args.name),
        ("images", f"{total:,} in {len(splits)} splits"),
        ("shape", f"({c}, {h}, {w})  (C, H, W)"),
        ("dtype", "uint8, 0..255"),
        ("source", first.source or DATASETS[args.name].summary),
        (
            "cache",
            str(first.mmap_path.parent)
            if first.mmap_path
            else f"not cached (read directly); cache root {cache.cache_root()}",
        ),
    ]
    split_rows = [("split", "images", "share")] + [
        (split, f"{len(s):,}", f"{len(s) / total:.1%}") for split, s in sets.items()
    ]
    text = _table(facts) + "\n\n" + _table(split_rows)
    if args.name in ("photos", "scenes"):
        text += "\n\n" + _patch_table(args.name, h, args.root)
    if args.val_fraction > 0 and args.name in ("photos", "scenes"):
        text += (
            f"\n\nval: a seeded (seed {args.seed}) {args.val_fraction:g} of the training photos' 64x64 blocks; "
            "training patches that touch a val block are dropped"
        )
    elif args.val_fraction > 0:
        text += f"\n\nval: a seeded (seed {args.seed}) hold-out of {args.val_fraction:g} of the training split"
    return text


def _share(flat: int, tiles: int) -> str:
    return f"{flat / tiles:.0%}" if tiles else "-"


def _patch_table(name: str, patch_size: int, root: str | None) -> str:
    """Per photo: origin, size, split, patch count, nearly flat share, licence."""
    ps: PatchSet
    if name == "photos":
        ps = photo_patches(patch_size)
        rows_info = [(p.name, p.package, p.licence) for p in PHOTOS]
    else:
        ps = scene_patches(patch_size, root=root)
        rows_info = [
            (i.name if i.scene == i.name else f"{i.name} (scene {i.scene})", i.origin, i.licence)
            for i in scene_images()
        ]
    stats = ps.meta["sources"]
    rows = [("photo", "from", "H x W", "split", "patches*", "flat**", "licence (as stated by the package)")]
    for k, (photo, origin, licence) in enumerate(rows_info):
        s = stats[k]
        size = f"{s['shape'][0]} x {s['shape'][1]}"
        if s["reduce"] > 1:
            size += f" (/{s['reduce']} of {s['original_shape'][0]} x {s['original_shape'][1]})"
        flat = _share(s["flat_tiles"], s["tiles"])
        if s["reduce"] > 1:
            flat += f" ({_share(s['flat_tiles_original'], s['tiles_original'])})"
        rows.append((photo, origin, size, "test" if ps.is_test[k] else "train", f"{ps.count(k):,}", flat, licence))
    return _table(rows) + (
        f"\n* train photos at stride {ps.stride}, before any val hold-out; test photos non-overlapping"
        f"\n** share of nearly flat {patch_size}x{patch_size} tiles (every channel's std < "
        f"{ps.meta['flat_std']:g} levels; in brackets: before downscaling)"
    )


def run_info(args: argparse.Namespace) -> int:
    """``depthq data info``: print the report (the CLI may print; the library logs)."""
    print(info_text(args))
    return 0
