"""Square patches cut from a list of photographs, cached as uint8, with a leak-free val hold-out.

The machinery behind the ``photos`` and ``scenes`` data sets. A data set is a list of
``PatchSource`` (a photograph, its test flag and an optional integer downscaling factor); this
module turns it into cached uint8 patches:

- each source is loaded as uint8 (H, W, 3) and, when ``reduce > 1``, downscaled by Pillow's
  ``Image.reduce`` (a box average over ``reduce`` x ``reduce`` blocks; the remainder rows and
  columns are cropped first so every output pixel averages a full block);
- **test** sources are cut into non-overlapping patches from the top-left corner; **train**
  sources at ``stride`` (default ``patch_size // 4``); the strip left at the right and bottom
  edges is dropped;
- **val** (``val_holdout``): a seeded fraction of the full ``VAL_BLOCK`` blocks of the training
  images is held out; val is the non-overlapping patches inside those blocks and every training
  patch that touches one is dropped, so no val pixel is ever trained on. The block grid is the
  same at patch sizes 32 and 64 (default strides), so a 32 -> 64 schedule holds out the same
  regions at both sizes.

While cutting, the build also measures, per source, the share of *nearly flat* patches: the
non-overlapping ``patch_size`` tiles whose every channel has a standard deviation below
``FLAT_STD`` pixel levels, both on the image as loaded and after the downscaling. The figures go
into the cache entry's ``meta.json`` (``PatchSet.meta["sources"]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from depthq.data import cache
from depthq.data.imageset import ImageSet, from_numpy
from depthq.errors import DataError

log = logging.getLogger(__name__)

PATCHES_VERSION = 2  # bump when the cutting changes: every patch cache is rebuilt
VAL_BLOCK = 64  # side of the held-out validation blocks (rounded up to whole val tiles)
FLAT_STD = 2.0  # a tile is "nearly flat" when every channel's std is below this (pixel levels)


@dataclass(frozen=True)
class PatchSource:
    """One photograph that patches are cut from."""

    name: str
    test: bool  # cut into the test split (whole image, non-overlapping patches)
    load: Callable[[], np.ndarray]  # returns uint8 (H, W, 3) at full resolution
    reduce: int = 1  # integer box-downscaling factor applied after loading


@dataclass
class PatchSet:
    """The cached patches of one list of sources at one (patch size, stride)."""

    train: np.ndarray  # uint8 (N, 3, P, P), memory-mapped
    train_coords: np.ndarray  # int32 (N, 3): (source index, row, column) of each patch's corner
    test: np.ndarray  # uint8 (T, 3, P, P)
    test_coords: np.ndarray  # int32 (T, 3)
    shapes: np.ndarray  # int32 (S, 2): each source's (H, W) after downscaling
    is_test: np.ndarray  # bool (S,): the sources' test flags
    folder: Path  # the cache entry
    patch_size: int
    stride: int
    meta: dict[str, Any]  # the entry's meta.json: counts and per-source statistics

    def count(self, source: int) -> int:
        """How many patches source ``source`` gives (in its own split)."""
        coords = self.test_coords if self.is_test[source] else self.train_coords
        return int((coords[:, 0] == source).sum())


def default_stride(patch_size: int) -> int:
    """The training stride: a quarter patch (8 for 32x32, 16 for 64x64)."""
    return max(1, patch_size // 4)


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (H // factor, W // factor, 3): the mean of each full factor x factor block."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[:h, :w])).reduce(factor))


def cut_patches(image: np.ndarray, patch_size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``patch_size`` squares of ``image`` (H, W, 3) whose corners lie on a ``stride`` grid.

    Returns:
        patches uint8 (N, 3, P, P) and their top-left corners int32 (N, 2) as (row, column).
    """
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch_size, patch_size), axis=(0, 1))
    windows = windows[::stride, ::stride]  # (ny, nx, 3, P, P): the window axes come last
    ny, nx = windows.shape[:2]
    ys, xs = np.meshgrid(np.arange(ny) * stride, np.arange(nx) * stride, indexing="ij")
    corners = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.int32)
    return np.ascontiguousarray(windows.reshape(-1, 3, patch_size, patch_size)), corners


def flat_tiles(image: np.ndarray, tile: int, max_std: float = FLAT_STD) -> tuple[int, int]:
    """(nearly flat tiles, all tiles) among the non-overlapping ``tile`` squares of ``image`` (H, W, C).

    A tile is nearly flat when the standard deviation of every channel inside it is below ``max_std``.
    """
    ny, nx = image.shape[0] // tile, image.shape[1] // tile
    if ny == 0 or nx == 0:
        return 0, 0
    blocks = image[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile, -1).astype(np.float32)
    std = blocks.std(axis=(1, 3))  # (ny, nx, C)
    return int((std.max(axis=-1) < max_std).sum()), ny * nx


def _build(folder: Path, sources: Sequence[PatchSource], patch_size: int, stride: int, label: str) -> dict:
    parts: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {False: [], True: []}
    shapes, stats = [], []
    for k, source in enumerate(tqdm(sources, desc=f"cutting {patch_size}x{patch_size} {label} patches", unit="photo")):
        full = source.load()
        image = downscale(full, source.reduce)
        if min(image.shape[:2]) < patch_size:
            raise DataError(
                f"{label}: {source.name} is {image.shape[0]}x{image.shape[1]} after downscaling by "
                f"{source.reduce}, smaller than the patch size {patch_size}"
            )
        shapes.append(image.shape[:2])
        patches, corners = cut_patches(image, patch_size, patch_size if source.test else stride)
        parts[source.test].append((patches, np.column_stack([np.full(len(corners), k, np.int32), corners])))
        flat_full, tiles_full = flat_tiles(full, patch_size)
        flat, tiles = flat_tiles(image, patch_size) if source.reduce > 1 else (flat_full, tiles_full)
        stats.append(
            {
                "name": source.name,
                "test": source.test,
                "reduce": source.reduce,
                "original_shape": list(full.shape[:2]),
                "shape": list(image.shape[:2]),
                "patches": len(corners),
                "flat_tiles_original": flat_full,
                "tiles_original": tiles_full,
                "flat_tiles": flat,
                "tiles": tiles,
            }
        )
    counts = {}
    for is_test, split in ((False, "train"), (True, "test")):
        if not parts[is_test]:
            raise DataError(f"{label}: no {split} source; a patch set needs both splits")
        cache.save_npy(folder / f"{split}.npy", np.concatenate([p for p, _ in parts[is_test]]))
        cache.save_npy(folder / f"{split}_coords.npy", np.concatenate([c for _, c in parts[is_test]]))
        counts[split] = sum(len(p) for p, _ in parts[is_test])
    cache.save_npy(folder / "shapes.npy", np.asarray(shapes, dtype=np.int32))
    log.info(
        "%s %dx%d stride %d: %d train / %d test patches",
        label,
        patch_size,
        patch_size,
        stride,
        counts["train"],
        counts["test"],
    )
    return {"patch_size": patch_size, "stride": stride, "flat_std": FLAT_STD, "counts": counts, "sources": stats}


def cached_patches(
    label: str, key: str, sources: Sequence[PatchSource], patch_size: int, stride: int | None = None
) -> PatchSet:
    """The patches of ``sources``, cut on first use and memory-mapped from the cache after.

    Args:
        label: the data set's name: the cache sub-folder and the progress/log label.
        key: a hash of everything the pixels depend on besides the sizes (``cache.cache_key``).
        sources: the photographs, in a fixed order (a patch's source index refers to it).
        patch_size, stride: the patch side and the training stride (default ``patch_size // 4``).
    """
    stride = default_stride(patch_size) if stride is None else stride
    if not 1 <= stride <= patch_size:
        raise DataError(f"{label} stride must be in 1..patch_size={patch_size}; got {stride}")
    full_key = cache.cache_key(key, PATCHES_VERSION)
    folder = cache.cache_root() / label / f"p{patch_size}-s{stride}-{full_key}"
    names = ("train", "train_coords", "test", "test_coords", "shapes")
    arrays, meta = cache.cached_arrays(folder, names, lambda out: _build(out, sources, patch_size, stride, label))
    is_test = np.array([s.test for s in sources], dtype=bool)
    return PatchSet(**arrays, is_test=is_test, folder=folder, patch_size=patch_size, stride=stride, meta=meta)


def val_holdout(ps: PatchSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training patches into (val rows, train rows), both sorted int64.

    A seeded ``val_fraction`` of the full ``block`` x ``block`` squares of the training images is
    held out; val = the non-overlapping patches tiling those blocks; train = the patches that touch
    no held-out block.
    """
    p, s = ps.patch_size, ps.stride
    tile = -(-p // s) * s  # smallest multiple of the stride >= p: val patches never overlap
    block = tile * -(-VAL_BLOCK // tile)  # 64 for (32, stride 8) and (64, stride 16)
    h, w = ps.shapes[:, 0].astype(np.int64), ps.shapes[:, 1].astype(np.int64)
    grid_h, grid_w = -(-h // block), -(-w // block)  # blocks per image, the partial edge ones included
    offsets = np.concatenate([[0], np.cumsum(grid_h * grid_w)])  # first block id of each image

    candidates = [
        offsets[k] + by * grid_w[k] + bx
        for k in np.flatnonzero(~ps.is_test)
        for by in range(h[k] // block)
        for bx in range(w[k] // block)
    ]  # full blocks only
    if not candidates:
        raise DataError(f"no full {block}x{block} block in the training images to hold out for val")
    n_val = max(1, round(val_fraction * len(candidates)))
    generator = torch.Generator().manual_seed(seed)
    chosen = np.asarray(candidates)[torch.randperm(len(candidates), generator=generator)[:n_val].numpy()]
    held = np.zeros(offsets[-1], dtype=bool)
    held[chosen] = True

    k, y, x = (ps.train_coords[:, i].astype(np.int64) for i in range(3))

    def block_of(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return offsets[k] + (row // block) * grid_w[k] + col // block

    # A patch spans at most two blocks per axis (p <= block), so its four corners find every block it touches.
    touches = (
        held[block_of(y, x)]
        | held[block_of(y, x + p - 1)]
        | held[block_of(y + p - 1, x)]
        | held[block_of(y + p - 1, x + p - 1)]
    )
    is_val = held[block_of(y, x)] & (y % tile == 0) & (x % tile == 0)
    return np.flatnonzero(is_val), np.flatnonzero(~touches)


def split_set(ps: PatchSet, split: str, *, name: str, source: str, val_fraction: float, seed: int) -> ImageSet:
    """One split ("train", "val" or "test") of a ``PatchSet`` as an ``ImageSet`` (see ``val_holdout``)."""
    if split == "test":
        return from_numpy(ps.test, name=name, split="test", source=source, mmap_path=ps.folder / "test.npy")
    train = from_numpy(ps.train, name=name, split="train", source=source, mmap_path=ps.folder / "train.npy")
    if val_fraction == 0.0:
        if split == "val":
            raise DataError(f"the val split needs val_fraction > 0 (it is held out of the training images of {name})")
        return train
    val_rows, train_rows = val_holdout(ps, val_fraction, seed)
    return train.subset(torch.from_numpy(val_rows if split == "val" else train_rows), split=split)
