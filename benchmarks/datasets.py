"""The photo data sets counted: patches per photo and split, validation hold-outs, flat shares.

    python benchmarks/datasets.py [--out PATH]

Reads the built-in photos and, where its Debian packages are installed, the scenes set (each
cut once at 32x32 and 64x64; cached). The figures depend on the data files, so they are a
results file (default ``benchmarks/results/datasets.json``; ``docs/results/datasets.json`` is
the published one), not typed into the documentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_tables, write_results  # noqa: E402
from depthq.data import get_dataset  # noqa: E402
from depthq.data.patches import PatchSet  # noqa: E402
from depthq.data.photos import PHOTOS, photo_patches  # noqa: E402
from depthq.data.scenes import missing_packages, scene_images, scene_patches  # noqa: E402
from depthq.results import Table  # noqa: E402

SIZES = (32, 64)
VAL_FRACTIONS = (0.0, 0.05, 0.1)


def _share(flat: int, tiles: int) -> str:
    return f"{flat / tiles:.0%}" if tiles else "-"


def photo_rows(sets: dict[int, PatchSet], info: list[tuple[str, str, str]]) -> tuple[tuple[str, ...], ...]:
    """Per photo: origin, size used (of), split, patches at each size, flat share, licence."""
    rows = []
    small = sets[SIZES[0]]
    for k, (name, origin, licence) in enumerate(info):
        s = small.meta["sources"][k]
        size = f"{s['shape'][0]} x {s['shape'][1]}"
        flat = _share(s["flat_tiles"], s["tiles"])
        if s["reduce"] > 1:
            size += f" ({s['original_shape'][0]} x {s['original_shape'][1]})"
            flat = f"{_share(s['flat_tiles_original'], s['tiles_original'])} -> {flat}"
        counts = [f"{sets[p].count(k):,}" for p in SIZES]
        rows.append((name, origin, size, "test" if small.is_test[k] else "train", *counts, flat, licence))
    totals = [f"{sets[p].meta['counts']['train']:,} train / {sets[p].meta['counts']['test']:,} test" for p in SIZES]
    rows.append((f"all {len(info)} photos", "", "", "", *totals, "", ""))
    return tuple(rows)


def photo_table(label: str, sets: dict[int, PatchSet], info: list[tuple[str, str, str]]) -> Table:
    stride = ", ".join(f"{sets[p].stride} at {p}" for p in SIZES)
    return Table(
        f"The {label} set, photo by photo",
        (
            "photo",
            "from",
            "H x W used (original)",
            "split",
            *(f"patches at {p}" for p in SIZES),
            f"nearly flat {SIZES[0]}x{SIZES[0]} tiles (original -> used)",
            "licence (as the package states it)",
        ),
        photo_rows(sets, info),
        notes=(
            f"Training photos are cut at stride P/4 ({stride}) before any validation hold-out; test photos "
            "into non-overlapping patches. A tile is nearly flat when every channel's standard deviation "
            f"inside it is below {sets[SIZES[0]].meta['flat_std']:g} pixel levels.",
        ),
    )


def val_table(names: list[str]) -> Table:
    rows = []
    for f in VAL_FRACTIONS:
        cells = [f"{f:g}"]
        for name in names:
            for p in SIZES:
                train = len(get_dataset(name, "train", image_size=p, val_fraction=f))
                val = len(get_dataset(name, "val", image_size=p, val_fraction=f)) if f > 0 else None
                cells.append(f"{train:,} / {'-' if val is None else f'{val:,}'}")
        rows.append(tuple(cells))
    return Table(
        "Training and validation patches by val_fraction (seed 0)",
        ("val_fraction", *(f"{n} {p}x{p} train / val" for n in names for p in SIZES)),
        tuple(rows),
        notes=(
            "The hold-out is a seeded share of the training photos' 64x64 blocks: val is the "
            "non-overlapping patches inside them, and every training patch touching one is dropped. "
            "val_fraction is therefore a share of the area, not of the patch count.",
        ),
    )


def flat_table(scenes: dict[int, PatchSet]) -> Table:
    sources = scenes[SIZES[0]].meta["sources"]
    wallpapers = [k for k, s in enumerate(sources) if s["reduce"] > 1]
    builtin = [k for k, s in enumerate(sources) if s["reduce"] == 1]

    def share(sets: PatchSet, ks: list[int], original: bool = False) -> str:
        src = sets.meta["sources"]
        flat = sum(src[k]["flat_tiles_original" if original else "flat_tiles"] for k in ks)
        tiles = sum(src[k]["tiles_original" if original else "tiles"] for k in ks)
        return f"{flat / tiles:.1%}"

    train = [k for k in range(len(sources)) if not scenes[SIZES[0]].is_test[k]]
    test = [k for k in range(len(sources)) if scenes[SIZES[0]].is_test[k]]
    rows = (
        (f"the {len(wallpapers)} wallpapers at full size", *(share(scenes[p], wallpapers, True) for p in SIZES)),
        ("the same, downscaled (as used)", *(share(scenes[p], wallpapers) for p in SIZES)),
        (f"the {len(builtin)} built-in photos", *(share(scenes[p], builtin) for p in SIZES)),
        (
            "scenes train / test photos (as used)",
            *(f"{share(scenes[p], train)} / {share(scenes[p], test)}" for p in SIZES),
        ),
    )
    return Table(
        "Nearly flat tiles in the scenes photographs",
        ("photographs", *(f"{p}x{p}" for p in SIZES)),
        rows,
        notes=(
            "Non-overlapping tiles, measured while cutting; nearly flat: every channel's standard "
            "deviation below 2 pixel levels.",
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/datasets.json")
    args = parser.parse_args(argv)
    photos = {p: photo_patches(p) for p in SIZES}
    tables = [photo_table("photos", photos, [(p.name, p.package, p.licence) for p in PHOTOS])]
    names = ["photos"]
    data: dict = {"photos": {str(p): photos[p].meta for p in SIZES}}
    if missing_packages():
        print(f"scenes: left out (missing Debian packages: {' '.join(missing_packages())})")
    else:
        scenes = {p: scene_patches(p) for p in SIZES}
        info = [(i.name, i.origin, i.licence) for i in scene_images()]
        tables += [photo_table("scenes", scenes, info), flat_table(scenes)]
        names.append("scenes")
        data["scenes"] = {str(p): scenes[p].meta for p in SIZES}
    tables.insert(1, val_table(names))
    print_tables(tables)
    summary = (
        "Patch counts of the photo data sets (`photos`, built in; `scenes`, the built-in photos plus "
        "Debian wallpaper photographs downscaled 4x, split by scene), their validation hold-outs, and "
        "the share of nearly flat tiles. `depthq data info NAME` prints the same per-photo facts."
    )
    path = write_results(args.out, title="The photo data sets", tables=tables, data=data, summary=summary)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
