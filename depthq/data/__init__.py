"""Image data for depthq: uint8 images (N, C, H, W) in 0..255, read offline.

- ``get_dataset(name, split, ...)``: "photos" (built in), "scenes" (photos + Debian wallpaper
  photographs), "fashion-mnist", "cifar10", "imagenet32", "imagenet64", "folder"; splits
  "train", "val" (held out of train), "test".
- ``choose_photo_set()``: "scenes" where its packages are installed, else "photos" (warned).
- ``ImageSet``: one split; ``.images`` (N, C, H, W) uint8, ``[i]`` (C, H, W), ``.batch(indices)``.
- ``augment``: random flips / crops of uint8 batches in plain torch (training only, off by default).
- ``ImageDataModule``: Lightning loaders with a seeded, resumable order and a progressive-size
  schedule of ``Stage(image_size, steps)``.
"""

from typing import TYPE_CHECKING, Any

from depthq.data.augment import augment
from depthq.data.cache import cache_root
from depthq.data.imageset import ImageSet
from depthq.data.photos import PHOTOS, Photo, load_photos
from depthq.data.registry import (
    DATA_ENV,
    DATASETS,
    DatasetInfo,
    dataset_info,
    get_dataset,
)
from depthq.data.scenes import WALLPAPERS, PhotoSetChoice, Wallpaper, choose_photo_set, load_scenes
from depthq.data.schedule import BatchKey, Stage, StagedBatchSampler, parse_schedule

if TYPE_CHECKING:
    from depthq.data.module import ImageDataModule, StagedBatches


def __getattr__(name: str) -> Any:
    # The data module needs lightning (a 2-3 s import); load it only when asked for, so that
    # `depthq data info` and plain readers start fast.
    if name in ("ImageDataModule", "StagedBatches"):
        from depthq.data import module

        return getattr(module, name)
    raise AttributeError(f"module 'depthq.data' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DATA_ENV",
    "PHOTOS",
    "WALLPAPERS",
    "BatchKey",
    "DatasetInfo",
    "ImageDataModule",
    "ImageSet",
    "Photo",
    "PhotoSetChoice",
    "Stage",
    "StagedBatchSampler",
    "StagedBatches",
    "Wallpaper",
    "augment",
    "cache_root",
    "choose_photo_set",
    "dataset_info",
    "get_dataset",
    "load_photos",
    "load_scenes",
    "parse_schedule",
]
