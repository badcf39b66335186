"""What ``depthq data info NAME`` prints: a data set's size, shape, splits, source and cache,
and for the photo sets, a row per photo (origin, size, split, patches, flat share, licence)."""

from __future__ import annotations

from collections.abc import Sequence

from depthq.data import cache
from depthq.data.imageset import ImageSet
from depthq.data.patches import PatchSet
from depthq.data.photos import PHOTOS, photo_patches
from depthq.data.registry import DATASETS, get_dataset
from depthq.data.scenes import scene_images, scene_patches


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def info_text(
    name: str, *, root: str | None = None, image_size: int | None = None, val_fraction: float = 0.0, seed: int = 0
) -> str:
    """The report ``depthq data info`` prints (``val_fraction``: the share of the training split
    held out as val, with ``seed``)."""
    splits = ("train", "val", "test") if val_fraction > 0 else ("train", "test")
    sets: dict[str, ImageSet] = {
        split: get_dataset(name, split, root=root, image_size=image_size, val_fraction=val_fraction, seed=seed)
        for split in splits
    }
    first = sets["train"]
    _, c, h, w = first.shape
    total = sum(len(s) for s in sets.values())
    facts = [
        ("data set", name),
        ("images", f"{total:,} in {len(splits)} splits"),
        ("shape", f"({c}, {h}, {w})  (C, H, W)"),
        ("dtype", "uint8, 0..255"),
        ("source", first.source or DATASETS[name].summary),
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
    if name in ("photos", "scenes"):
        text += "\n\n" + _patch_table(name, h, root)
    if val_fraction > 0 and name in ("photos", "scenes"):
        text += (
            f"\n\nval: a seeded (seed {seed}) {val_fraction:g} of the training photos' 64x64 blocks; "
            "training patches that touch a val block are dropped"
        )
    elif val_fraction > 0:
        text += f"\n\nval: a seeded (seed {seed}) hold-out of {val_fraction:g} of the training split"
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
