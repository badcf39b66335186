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
(``depthq.data.patches``, ``depthq.data.cache``); later calls memory-map them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
from PIL import Image

from depthq.data import cache
from depthq.data.imageset import ImageSet
from depthq.data.patches import PatchSet, PatchSource, cached_patches, split_set
from depthq.errors import DataError

PHOTOS_VERSION = 1  # the photo list's version (a key of the patch and VGG-feature caches)


@dataclass(frozen=True)
class Photo:
    """One bundled photograph."""

    name: str
    package: str  # the Python package whose files hold it: "skimage.data" or "sklearn.datasets"
    file: str  # the file inside that package
    licence: str  # as stated by the package (docstring / DESCR)
    test: bool  # held out as the test split


PHOTOS: tuple[Photo, ...] = (
    Photo(
        "astronaut", "skimage.data", "astronaut.png", "public domain (NASA; 'no known copyright restrictions')", False
    ),
    Photo("chelsea", "skimage.data", "chelsea.png", "CC0 (photographer Stefan van der Walt)", True),
    Photo("coffee", "skimage.data", "coffee.png", "CC0 (photographer Rachel Michetti)", True),
    Photo("rocket", "skimage.data", "rocket.jpg", "public domain (SpaceX)", False),
    Photo("hubble_deep_field", "skimage.data", "hubble_deep_field.jpg", "public domain (NASA)", False),
    Photo("immunohistochemistry", "skimage.data", "ihc.png", "'no known copyright restrictions' (CMMI)", False),
    Photo("retina", "skimage.data", "retina.jpg", "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)", False),
    Photo(
        "motorcycle_left",
        "skimage.data",
        "motorcycle_left.png",
        "none stated (Middlebury 2014 stereo benchmark, Scharstein et al.)",
        False,
    ),
    Photo(
        "motorcycle_right",
        "skimage.data",
        "motorcycle_right.png",
        "none stated (Middlebury 2014 stereo benchmark, Scharstein et al.)",
        False,
    ),
    Photo("china", "sklearn.datasets", "images/china.jpg", "CC BY 2.0 (Flickr, danielbuechele)", True),
    Photo(
        "flower",
        "sklearn.datasets",
        "images/flower.jpg",
        "CC BY 2.0 (Flickr, vultilion; the DESCR credit line says danielbuechele)",
        False,
    ),
)
MAX_PATCH_SIZE = 300  # the shortest side of any photo (chelsea)


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as uint8 (H, W, 3), read from the installed package's file."""
    path = files(photo.package).joinpath(photo.file)
    try:
        with Image.open(path) as im:  # type: ignore[arg-type]
            return np.asarray(im.convert("RGB"))
    except OSError as err:
        raise RuntimeError(
            f"bundled photo {photo.name} ({photo.package}/{photo.file}) could not be read: {err}; "
            "is the package installed completely?"
        ) from err


def photo_sources() -> list[PatchSource]:
    """The 11 photographs as patch sources, in ``PHOTOS`` order (no downscaling)."""
    return [PatchSource(p.name, p.test, functools.partial(load_photo, p)) for p in PHOTOS]


def photo_patches(patch_size: int = 32, stride: int | None = None) -> PatchSet:
    """The train and test patches, cut on first use and memory-mapped from the cache after."""
    if not 2 <= patch_size <= MAX_PATCH_SIZE:
        raise DataError(
            f"photos patch size must be in 2..{MAX_PATCH_SIZE} (the smallest photo is 300x451); got {patch_size}"
        )
    key = cache.cache_key([(p.name, p.file, p.test) for p in PHOTOS], PHOTOS_VERSION)
    return cached_patches("photos", key, photo_sources(), patch_size, stride)


def describe_source(pp: PatchSet) -> str:
    """One line saying which photos and how the patches were cut."""
    test = ", ".join(p.name for p in PHOTOS if p.test)
    return (
        f"{len(PHOTOS)} colour photographs bundled with scikit-image and scikit-learn; "
        f"{pp.patch_size}x{pp.patch_size} patches; train: {len(PHOTOS) - sum(p.test for p in PHOTOS)} photos "
        f"at stride {pp.stride}; test: {test} (whole photos, non-overlapping patches)"
    )


def load_photos(
    split: str = "train", *, patch_size: int = 32, stride: int | None = None, val_fraction: float = 0.0, seed: int = 0
) -> ImageSet:
    """One split of ``photos`` as an ``ImageSet`` of uint8 (N, 3, P, P); see the module docstring."""
    pp = photo_patches(patch_size, stride)
    return split_set(pp, split, name="photos", source=describe_source(pp), val_fraction=val_fraction, seed=seed)
