"""The built-in photos: real pixels, a split by whole photo, a leak-free val hold-out, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthq.data import get_dataset, patches
from depthq.data.patches import val_holdout
from depthq.data.photos import PHOTOS, load_photo, photo_patches

TEST_NAMES = {"chelsea", "coffee", "china"}


def _names(coords: np.ndarray) -> set[str]:
    return {PHOTOS[k].name for k in np.unique(coords[:, 0])}


def test_bundled_photos_are_the_package_images():
    from skimage import data
    from sklearn.datasets import load_sample_image

    np.testing.assert_array_equal(load_photo(PHOTOS[1]), data.chelsea())
    np.testing.assert_array_equal(load_photo(PHOTOS[9]), load_sample_image("china.jpg"))
    assert all(load_photo(p).ndim == 3 for p in PHOTOS)  # all colour, all readable offline


def test_no_photo_is_in_both_splits():
    pp = photo_patches(32)
    train_names, test_names = _names(pp.train_coords), _names(pp.test_coords)
    assert test_names == TEST_NAMES
    assert train_names.isdisjoint(test_names)
    assert train_names | test_names == {p.name for p in PHOTOS}
    assert {"motorcycle_left", "motorcycle_right"} <= train_names  # one scene: same side of the split


@pytest.mark.parametrize("size", [32, 64])
def test_patch_counts_follow_the_documented_grids(size):
    pp = photo_patches(size)
    stride = size // 4
    grid = [((h - size) // s + 1) * ((w - size) // s + 1)
            for (h, w), s in ((load_photo(p).shape[:2], size if p.test else stride) for p in PHOTOS)]
    n_train = sum(n for n, p in zip(grid, PHOTOS) if not p.test)
    n_test = sum(n for n, p in zip(grid, PHOTOS) if p.test)
    assert (len(pp.train), len(pp.test)) == (n_train, n_test)
    assert {32: (68_505, 602), 64: (16_026, 142)}[size] == (n_train, n_test)  # the counts in docs/data.md


def test_patches_are_the_photo_pixels_in_channel_row_column_order():
    pp = photo_patches(32)
    for split, coords in (("train", pp.train_coords), ("test", pp.test_coords)):
        array = pp.train if split == "train" else pp.test
        for i in (0, len(coords) // 2, len(coords) - 1):
            k, y, x = coords[i]
            image = load_photo(PHOTOS[k])  # (H, W, 3)
            np.testing.assert_array_equal(array[i], image[y:y + 32, x:x + 32].transpose(2, 0, 1))
    # test patches tile without overlap: corners on the 32 grid
    assert (pp.test_coords[:, 1:] % 32 == 0).all()


def test_get_dataset_photos_shapes_and_sizes():
    train, test = get_dataset("photos"), get_dataset("photos", "test", image_size=64)
    assert train.shape == (68_505, 3, 32, 32) and test.shape == (142, 3, 64, 64)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert "chelsea, coffee, china" in train.describe()
    with pytest.raises(ValueError, match="patch size must be in 2..300"):
        get_dataset("photos", image_size=301)
    with pytest.raises(ValueError, match="built in and reads no folder"):
        get_dataset("photos", root="/tmp")
    with pytest.raises(ValueError, match="set val_fraction > 0"):
        get_dataset("photos", "val")


def _pixel_masks(pp, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Per training photo, how many of the given patches cover each pixel."""
    p, masks = pp.patch_size, {}
    coords = pp.train_coords[rows].astype(np.int64)
    for k in np.unique(coords[:, 0]):
        _, y, x = coords[coords[:, 0] == k].T
        h, w = pp.shapes[k]
        corners = np.zeros((h + p + 1, w + p + 1), np.int32)  # 2-D difference array of the squares
        for dy, dx, sign in ((0, 0, 1), (p, 0, -1), (0, p, -1), (p, p, 1)):
            np.add.at(corners, (y + dy, x + dx), sign)
        masks[int(k)] = corners.cumsum(0).cumsum(1)[:h, :w]
    return masks


@pytest.mark.parametrize("size", [32, 64])
def test_val_holdout_never_shares_a_pixel_with_train(size):
    pp = photo_patches(size)
    val_rows, train_rows = val_holdout(pp, 0.1, seed=1)
    assert len(val_rows) > 0 and len(np.intersect1d(val_rows, train_rows)) == 0
    val_px, train_px = _pixel_masks(pp, val_rows), _pixel_masks(pp, train_rows)
    for k, mask in val_px.items():
        assert mask.max() == 1  # val patches do not overlap each other
        assert not (mask.astype(bool) & train_px.get(k, np.zeros_like(mask)).astype(bool)).any()


def test_val_regions_are_the_same_at_32_and_64_and_follow_the_seed():
    def val_pixels(size: int, seed: int) -> dict[int, np.ndarray]:
        pp = photo_patches(size)
        return {k: m.astype(bool) for k, m in _pixel_masks(pp, val_holdout(pp, 0.05, seed)[0]).items()}

    at32, at64 = val_pixels(32, 0), val_pixels(64, 0)
    assert at32.keys() == at64.keys() and all((at32[k] == at64[k]).all() for k in at32)
    other = val_pixels(32, 1)
    assert any(k not in other or not (other[k] == at32[k]).all() for k in at32)
    a = get_dataset("photos", "val", val_fraction=0.05, seed=0)
    b = get_dataset("photos", "val", val_fraction=0.05, seed=0)
    assert torch.equal(a.images, b.images)
    assert len(a) == 4 * round(0.05 * 1081)  # 4 patches of 32 per held-out 64x64 block


def test_photos_cache_is_built_once_then_reused(fresh_cache, monkeypatch):
    calls = []
    real_build = patches._build
    monkeypatch.setattr(patches, "_build", lambda *a: calls.append(a) or real_build(*a))
    first = photo_patches(160, stride=160)  # a coarse grid builds fast
    npy = first.folder / "train.npy"
    assert calls and first.folder.is_relative_to(fresh_cache)
    stamp = npy.stat().st_mtime_ns
    second = photo_patches(160, stride=160)
    assert len(calls) == 1 and npy.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.train, second.train)
    assert isinstance(second.train, np.memmap)
    assert not list(first.folder.glob(".*tmp*"))  # no temporary files left behind


def test_an_unreadable_cache_entry_is_rebuilt(fresh_cache):
    pp = photo_patches(160, stride=160)
    (pp.folder / "test.npy").write_bytes(b"not a numpy file")
    again = photo_patches(160, stride=160)
    assert again.test.shape == pp.test.shape
