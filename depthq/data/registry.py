"""``get_dataset``: every data set behind one call, with its root, image size and splits.

Where each data set is read from (``root`` may be the data set's folder itself, or a parent
holding it under the standard sub-folder name in the table):

=============  ==========================  ===============================================
name           sub-folder                  default when ``root`` is None
=============  ==========================  ===============================================
photos         (built in)                  the package files; ``root`` must be None
scenes         (installed packages)        the bundled photos + Debian wallpapers under
                                           ``$DEPTHQ_WALLPAPERS`` or ``/`` (``root``: the
                                           folder holding ``usr/share/...``)
fashion-mnist  ``fashion-mnist/``          ``$DEPTHQ_DATA/fashion-mnist`` if it exists,
                                           else ``/usr/share/datasets/fashion-mnist``
cifar10        ``cifar-10-batches-py/``    ``$DEPTHQ_DATA/cifar-10-batches-py``
imagenet32     ``imagenet32/``             ``$DEPTHQ_DATA/imagenet32``
imagenet64     ``imagenet64/``             ``$DEPTHQ_DATA/imagenet64``
folder         (any)                       none: ``root`` is required
=============  ==========================  ===============================================

Splits: "train" and "test" are the data set's standard ones (downsampled ImageNet: test is the
official ``val_data``). "val" is a seeded hold-out of ``val_fraction`` of the *training* split,
and "train" then excludes it, so model selection never touches the test split. For photos
and scenes the hold-out is by image region (see ``depthq.data.patches``), for the others by image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depthq.data import formats
from depthq.data.folder import read_folder
from depthq.data.imageset import ImageSet, from_numpy
from depthq.data.photos import load_photos
from depthq.data.scenes import load_scenes, wallpaper_root
from depthq.errors import DataError, MissingFileError

DATA_ENV = "DEPTHQ_DATA"
FASHION_SYSTEM_ROOT = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "val", "test")
IMAGENET_SOURCE = "Chrabaszcz et al. 2017 downsampled ImageNet, box-resize npz, {S}x{S}; test split = official val_data"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set, known without reading it."""

    name: str
    channels: int
    native_size: int | None  # the only image size it has; None: any size (photos, folder)
    default_size: int
    subfolder: str | None  # its folder's standard name under $DEPTHQ_DATA
    summary: str


DATASETS: dict[str, DatasetInfo] = {
    "photos": DatasetInfo(
        "photos",
        3,
        None,
        32,
        None,
        "patches of 11 colour photographs bundled with scikit-image and scikit-learn (built in, no download)",
    ),
    "scenes": DatasetInfo(
        "scenes",
        3,
        None,
        32,
        None,
        "patches of 49 real photographs of 48 scenes: the 11 "
        "bundled photos + 38 from Debian wallpaper packages (apt-get), split by scene",
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, 28, "fashion-mnist", "Fashion-MNIST (Xiao et al. 2017), idx files, 60k train / 10k test"
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        3,
        32,
        32,
        "cifar-10-batches-py",
        "CIFAR-10 (Krizhevsky 2009), python pickle batches, 50k train / 10k test",
    ),
    "imagenet32": DatasetInfo("imagenet32", 3, 32, 32, "imagenet32", IMAGENET_SOURCE.format(S=32)),
    "imagenet64": DatasetInfo("imagenet64", 3, 64, 64, "imagenet64", IMAGENET_SOURCE.format(S=64)),
    "folder": DatasetInfo("folder", 3, None, 32, None, "a folder of PNG/JPEG images, resized and center-cropped"),
}
LAYOUTS = {
    "fashion-mnist": formats.FASHION_LAYOUT,
    "cifar10": formats.CIFAR_LAYOUT,
    "imagenet32": formats.IMAGENET_LAYOUT.format(S=32),
    "imagenet64": formats.IMAGENET_LAYOUT.format(S=64),
}


def dataset_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def check_image_size(name: str, image_size: int | None) -> int:
    """The image size to use: the native one for fixed-size sets (any other is an error)."""
    info = dataset_info(name)
    if image_size is None:
        return info.default_size
    if info.native_size is not None and image_size != info.native_size:
        raise DataError(
            f"{name} images are {info.native_size}x{info.native_size}; got image_size={image_size}"
            + (" (use imagenet32/imagenet64 for the other size)" if name.startswith("imagenet") else "")
        )
    if image_size < 2:
        raise DataError(f"image_size must be >= 2; got {image_size}")
    return image_size


def resolve_root(name: str, root: str | os.PathLike | None) -> Path:
    """The folder to read ``name`` from (see the module docstring for the rules)."""
    info = dataset_info(name)
    if name == "photos":
        if root is not None:
            raise DataError("photos is built in and reads no folder; leave root unset")
        return Path()
    if name == "scenes":
        return wallpaper_root(root)
    if root is not None:
        base = Path(root).expanduser()
        if info.subfolder and (base / info.subfolder).is_dir():
            return base / info.subfolder
        return base
    env = os.environ.get(DATA_ENV)
    if name == "fashion-mnist":
        if env and (Path(env).expanduser() / "fashion-mnist").is_dir():
            return Path(env).expanduser() / "fashion-mnist"
        return FASHION_SYSTEM_ROOT
    if name == "folder":
        raise DataError("the folder data set needs root= (CLI: --root DIR), a directory of PNG/JPEG images")
    if not env:
        raise MissingFileError(
            f"{name} is read from a local folder and none was given: pass root= (CLI: --root DIR) or set "
            f"{DATA_ENV} so that ${DATA_ENV}/{info.subfolder} is {LAYOUTS[name]}. Nothing is downloaded."
        )
    return Path(env).expanduser() / info.subfolder  # type: ignore[operator]


def holdout_rows(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (val rows, train rows) of ``n`` training images: ``round(val_fraction * n)`` (>= 1) val."""
    n_val = max(1, round(val_fraction * n))
    if n_val >= n:
        raise DataError(f"val_fraction={val_fraction} of {n} training images leaves none for training")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_val].sort().values, perm[n_val:].sort().values


def _read_full(name: str, split: str, root: Path, size: int) -> ImageSet:
    """The whole standard ``split`` ("train" or "test") of a non-built-in data set."""
    info = DATASETS[name]
    if name == "folder":
        images, is_test, path = read_folder(root, size)
        rows = np.flatnonzero(is_test if split == "test" else ~is_test)
        if len(rows) == 0:
            raise DataError(f"folder {root} has {len(images)} image(s): too few for a {split} split")
        full = from_numpy(
            images,
            name=name,
            split=split,
            mmap_path=path,
            source=f"{len(images)} images from {root}, BOX-resized and center-cropped to {size}x{size}; "
            f"test = {int(is_test.sum())} images chosen by the hash of their file name",
        )
        return full.subset(torch.from_numpy(rows), split=split)
    source = f"{info.summary} (read from {root})"
    if name == "imagenet32" or name == "imagenet64":
        images, labels, path = formats.read_imagenet(root, split, size)
        return from_numpy(
            images, name=name, split=split, labels=torch.from_numpy(labels), source=source, mmap_path=path
        )
    reader = formats.read_cifar10 if name == "cifar10" else formats.read_fashion_mnist
    images, labels = reader(root, split)
    return from_numpy(images, name=name, split=split, labels=torch.from_numpy(labels), source=source)


def get_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ImageSet:
    """One split of a data set as uint8 images (N, C, H, W) in 0..255.

    Args:
        name: "photos", "scenes", "fashion-mnist", "cifar10", "imagenet32", "imagenet64" or "folder".
        split: "train", "val" (held out of train; needs ``val_fraction > 0``) or "test".
        root: the data set's folder, or a parent holding it under its standard name; default from
            ``$DEPTHQ_DATA`` (see the module docstring). Must be None for photos; for scenes, the
            folder holding the wallpapers' ``usr/share/...`` (default ``$DEPTHQ_WALLPAPERS`` or ``/``).
        image_size: photos/scenes' patch size / folder's resize size (default 32); fixed-size sets accept
            only their own size (cifar10 32, imagenet32 32, imagenet64 64, fashion-mnist 28).
        val_fraction: the share of the training split held out as "val" (0 <= f < 1).
        seed: seeds the val hold-out (the train/test split never depends on it).

    Example::

        train = get_dataset("photos", "train", val_fraction=0.05)  # ImageSet, images (N, 3, 32, 32)
        val = get_dataset("photos", "val", val_fraction=0.05)      # disjoint from train
    """
    dataset_info(name)  # rejects an unknown name
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}; got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1); got {val_fraction}")
    if seed < 0:
        raise DataError(f"seed must be >= 0; got {seed}")
    if split == "val" and val_fraction == 0.0:
        raise DataError("the val split is held out of the training split: set val_fraction > 0 (e.g. 0.05)")
    size = check_image_size(name, image_size)
    if name == "photos":
        resolve_root(name, root)  # rejects a root
        return load_photos(split, patch_size=size, val_fraction=val_fraction, seed=seed)
    if name == "scenes":
        return load_scenes(split, patch_size=size, val_fraction=val_fraction, seed=seed, root=resolve_root(name, root))
    full = _read_full(name, "test" if split == "test" else "train", resolve_root(name, root), size)
    if split == "test" or val_fraction == 0.0:
        return full
    val_rows, train_rows = holdout_rows(len(full), val_fraction, seed)
    return full.subset(val_rows if split == "val" else train_rows, split=split)
