"""``photos``: the built-in data set, square patches of real colour photographs shipped inside
scikit-image and scikit-learn, so a fresh install can train and evaluate with no download.

The 11 photographs (``PHOTOS``) are read straight from the files inside the installed packages
with Pillow (the same pixels ``skimage.data.*`` and ``sklearn.datasets.load_sample_image`` return);
nothing needs the network. scikit-image images that need a download (eagle, lily, kidney, ...) and
the greyscale ones are not used, nor the synthetic colour graphics (colorwheel, logo).

Splits, all deterministic:

- **test**: the photos marked ``test`` (chelsea, coffee, china), whole, cut into non-overlapping
  patches from the top-left corner (the remainder strip is dropped). No test photo, and no other
  view of the same scene, appears in training (the stereo_motorcycle left/right pair is in train).
- **train**: the other 8 photos, patches at ``stride`` (default ``patch_size // 4``).
- **val** (``val_fraction > 0``): whole blocks of the training photos. The full 64x64 blocks
  (for patch sizes up to 64 with the default stride) of the 8 training photos are the candidates;
  a seeded ``val_fraction`` of them is held out, val is the non-overlapping patches inside those
  blocks, and every training patch that touches a held-out block is dropped, so no val pixel is
  ever trained on. The block grid is the same at 32 and 64, so a progressive 32 -> 64 schedule
  holds out the same regions at both sizes.

The patches are cut once per (patch size, stride) and cached as uint8 ``.npy`` files
(``depthq.data.cache``); later calls memory-map them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from depthq.data import cache
from depthq.data.imageset import ImageSet, from_numpy

log = logging.getLogger(__name__)

PHOTOS_VERSION = 1
VAL_BLOCK = 64  # side of the held-out validation blocks (rounded up to whole val tiles)


@dataclass(frozen=True)
class Photo:
    """One bundled photograph."""

    name: str
    package: str  # the Python package whose files hold it: "skimage.data" or "sklearn.datasets"
    file: str  # the file inside that package
    licence: str  # as stated by the package (docstring / DESCR)
    test: bool  # held out as the test split


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage.data", "astronaut.png",
          "public domain (NASA; 'no known copyright restrictions')", False),
    Photo("chelsea", "skimage.data", "chelsea.png", "CC0 (photographer Stefan van der Walt)", True),
    Photo("coffee", "skimage.data", "coffee.png", "CC0 (photographer Rachel Michetti)", True),
    Photo("rocket", "skimage.data", "rocket.jpg", "public domain (SpaceX)", False),
    Photo("hubble_deep_field", "skimage.data", "hubble_deep_field.jpg", "public domain (NASA)", False),
    Photo("immunohistochemistry", "skimage.data", "ihc.png", "'no known copyright restrictions' (CMMI)", False),
    Photo("retina", "skimage.data", "retina.jpg", "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)", False),
    Photo("motorcycle_left", "skimage.data", "motorcycle_left.png",
          "none stated (Middlebury 2014 stereo benchmark, Scharstein et al.)", False),
    Photo("motorcycle_right", "skimage.data", "motorcycle_right.png",
          "none stated (Middlebury 2014 stereo benchmark, Scharstein et al.)", False),
    Photo("china", "sklearn.datasets", "images/china.jpg", "CC BY 2.0 (Flickr, danielbuechele)", True),
    Photo("flower", "sklearn.datasets", "images/flower.jpg",
          "CC BY 2.0 (Flickr, vultilion; the DESCR credit line says danielbuechele)", False),
)
MAX_PATCH_SIZE = 300  # the shortest side of any photo (chelsea)


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as uint8 (H, W, 3), read from the installed package's file."""
    path = files(photo.package).joinpath(photo.file)
    try:
        with Image.open(path) as im:  # type: ignore[arg-type]
            return np.asarray(im.convert("RGB"))
    except OSError as err:
        raise RuntimeError(f"bundled photo {photo.name} ({photo.package}/{photo.file}) could not be read: {err}; "
                           "is the package installed completely?") from err


def default_stride(patch_size: int) -> int:
    """The training stride: a quarter patch (8 for 32x32, 16 for 64x64)."""
    return max(1, patch_size // 4)


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


@dataclass
class PhotoPatches:
    """The cached patches of one (patch size, stride)."""

    train: np.ndarray  # uint8 (N, 3, P, P), memory-mapped
    train_coords: np.ndarray  # int32 (N, 3): (photo index, row, column) of each patch's corner
    test: np.ndarray  # uint8 (T, 3, P, P)
    test_coords: np.ndarray  # int32 (T, 3)
    shapes: np.ndarray  # int32 (len(PHOTOS), 2): each photo's (H, W)
    folder: Path  # the cache entry
    patch_size: int
    stride: int


def _build(folder: Path, patch_size: int, stride: int) -> dict:
    parts: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {False: [], True: []}
    shapes = []
    for k, photo in enumerate(tqdm(PHOTOS, desc=f"cutting {patch_size}x{patch_size} photo patches", unit="photo")):
        image = load_photo(photo)
        shapes.append(image.shape[:2])
        patches, corners = cut_patches(image, patch_size, patch_size if photo.test else stride)
        parts[photo.test].append((patches, np.column_stack([np.full(len(corners), k, np.int32), corners])))
    counts = {}
    for is_test, split in ((False, "train"), (True, "test")):
        cache.save_npy(folder / f"{split}.npy", np.concatenate([p for p, _ in parts[is_test]]))
        cache.save_npy(folder / f"{split}_coords.npy", np.concatenate([c for _, c in parts[is_test]]))
        counts[split] = sum(len(p) for p, _ in parts[is_test])
    cache.save_npy(folder / "shapes.npy", np.asarray(shapes, dtype=np.int32))
    log.info("photos %dx%d stride %d: %d train / %d test patches", patch_size, patch_size, stride,
             counts["train"], counts["test"])
    return {"patch_size": patch_size, "stride": stride, "photos": [p.name for p in PHOTOS], "counts": counts}


def photo_patches(patch_size: int = 32, stride: int | None = None) -> PhotoPatches:
    """The train and test patches, cut on first use and memory-mapped from the cache after."""
    stride = default_stride(patch_size) if stride is None else stride
    if not 2 <= patch_size <= MAX_PATCH_SIZE:
        raise ValueError(f"photos patch size must be in 2..{MAX_PATCH_SIZE} (the smallest photo is 300x451); "
                         f"got {patch_size}")
    if not 1 <= stride <= patch_size:
        raise ValueError(f"photos stride must be in 1..patch_size={patch_size}; got {stride}")
    key = cache.cache_key([(p.name, p.file, p.test) for p in PHOTOS], PHOTOS_VERSION)
    folder = cache.cache_root() / "photos" / f"p{patch_size}-s{stride}-v{PHOTOS_VERSION}-{key}"
    names = ("train", "train_coords", "test", "test_coords", "shapes")
    arrays, _ = cache.cached_arrays(folder, names, lambda out: _build(out, patch_size, stride))
    return PhotoPatches(**arrays, folder=folder, patch_size=patch_size, stride=stride)


def val_holdout(pp: PhotoPatches, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training patches into (val rows, train rows), both sorted int64.

    A seeded ``val_fraction`` of the full ``block`` x ``block`` squares of the training photos is
    held out; val = the non-overlapping patches tiling those blocks; train = the patches that touch
    no held-out block.
    """
    p, s = pp.patch_size, pp.stride
    tile = -(-p // s) * s  # smallest multiple of the stride >= p: val patches never overlap
    block = tile * -(-VAL_BLOCK // tile)  # 64 for (32, stride 8) and (64, stride 16)
    h, w = pp.shapes[:, 0].astype(np.int64), pp.shapes[:, 1].astype(np.int64)
    grid_h, grid_w = -(-h // block), -(-w // block)  # blocks per photo, the partial edge ones included
    offsets = np.concatenate([[0], np.cumsum(grid_h * grid_w)])  # first block id of each photo

    candidates = [offsets[k] + by * grid_w[k] + bx
                  for k, photo in enumerate(PHOTOS) if not photo.test
                  for by in range(h[k] // block) for bx in range(w[k] // block)]  # full blocks only
    n_val = max(1, round(val_fraction * len(candidates)))
    generator = torch.Generator().manual_seed(seed)
    chosen = np.asarray(candidates)[torch.randperm(len(candidates), generator=generator)[:n_val].numpy()]
    held = np.zeros(offsets[-1], dtype=bool)
    held[chosen] = True

    k, y, x = (pp.train_coords[:, i].astype(np.int64) for i in range(3))

    def block_of(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return offsets[k] + (row // block) * grid_w[k] + col // block

    # A patch spans at most two blocks per axis (p <= block), so its four corners find every block it touches.
    touches = (held[block_of(y, x)] | held[block_of(y, x + p - 1)]
               | held[block_of(y + p - 1, x)] | held[block_of(y + p - 1, x + p - 1)])
    is_val = held[block_of(y, x)] & (y % tile == 0) & (x % tile == 0)
    return np.flatnonzero(is_val), np.flatnonzero(~touches)


def describe_source(pp: PhotoPatches) -> str:
    """One line saying which photos and how the patches were cut."""
    test = ", ".join(p.name for p in PHOTOS if p.test)
    return (f"{len(PHOTOS)} colour photographs bundled with scikit-image and scikit-learn; "
            f"{pp.patch_size}x{pp.patch_size} patches; train: {len(PHOTOS) - sum(p.test for p in PHOTOS)} photos "
            f"at stride {pp.stride}; test: {test} (whole photos, non-overlapping patches)")


def load_photos(split: str = "train", *, patch_size: int = 32, stride: int | None = None,
                val_fraction: float = 0.0, seed: int = 0) -> ImageSet:
    """One split of ``photos`` as an ``ImageSet`` of uint8 (N, 3, P, P); see the module docstring."""
    pp = photo_patches(patch_size, stride)
    source = describe_source(pp)
    if split == "test":
        return from_numpy(pp.test, name="photos", split="test", source=source, mmap_path=pp.folder / "test.npy")
    train = from_numpy(pp.train, name="photos", split="train", source=source, mmap_path=pp.folder / "train.npy")
    if val_fraction == 0.0:
        if split == "val":
            raise ValueError("the val split needs val_fraction > 0 (it is held out of the training photos)")
        return train
    val_rows, train_rows = val_holdout(pp, val_fraction, seed)
    return train.subset(torch.from_numpy(val_rows if split == "val" else train_rows), split=split)
