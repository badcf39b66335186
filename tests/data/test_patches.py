"""Patch cutting from a list of sources: box downscaling, flat-tile counts, grids, val hold-out, errors."""

from __future__ import annotations

import numpy as np
import pytest

from depthq.data.patches import (
    PatchSource,
    cached_patches,
    downscale,
    flat_tiles,
    split_set,
    val_holdout,
)


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_downscale_is_the_mean_of_full_blocks():
    image = _image(13, 18, 0)  # 13 x 18: one row and two columns left over at factor 4
    out = downscale(image, 4)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    blocks = image[:12, :16].astype(np.float64).reshape(3, 4, 4, 4, 3).mean(axis=(1, 3))
    assert np.abs(out - blocks).max() <= 0.5 + 1e-9  # rounded to the nearest level
    assert downscale(image, 1) is image


def test_flat_tiles_counts_tiles_whose_every_channel_is_nearly_constant():
    image = np.zeros((8, 12, 3), np.uint8)  # three 4x4 tiles per row, two rows
    image[:4, 4:8, 1] = np.arange(16).reshape(4, 4)  # tile (0, 1): green varies -> not flat
    image[4:, 8:, :] = 200  # tile (1, 2): constant, flat
    image[4:, :4, 0] = [[0, 1] * 2, [1, 0] * 2] * 2  # tile (1, 0): std 0.5 -> flat
    assert flat_tiles(image, 4) == (5, 6)
    assert flat_tiles(image, 4, max_std=0.4) == (4, 6)
    assert flat_tiles(image, 16) == (0, 0)  # no whole tile


def _sources(reduce: int = 1) -> list[PatchSource]:
    return [PatchSource("a", False, lambda: _image(40, 56, 1), reduce),
            PatchSource("b", True, lambda: _image(36, 50, 2), reduce),
            PatchSource("c", False, lambda: _image(64, 64, 3), reduce)]


def test_grids_splits_and_pixels(fresh_cache):
    ps = cached_patches("toy", "key-1", _sources(), 16, stride=4)
    # train: a 40x56 -> 7 x 11 corners, c 64x64 -> 13 x 13; test: b 36x50 -> 2 x 3 non-overlapping
    assert (len(ps.train), len(ps.test)) == (7 * 11 + 13 * 13, 2 * 3)
    assert [ps.count(k) for k in range(3)] == [77, 6, 169]
    assert ps.is_test.tolist() == [False, True, False] and ps.shapes.tolist() == [[40, 56], [36, 50], [64, 64]]
    k, y, x = ps.test_coords[-1]
    np.testing.assert_array_equal(ps.test[-1], _image(36, 50, 2)[y:y + 16, x:x + 16].transpose(2, 0, 1))
    assert ps.meta["sources"][0]["patches"] == 77 and ps.meta["counts"] == {"train": 246, "test": 6}
    test = split_set(ps, "test", name="toy", source="three random images", val_fraction=0.0, seed=0)
    assert test.shape == (6, 3, 16, 16) and "three random images" in test.describe()


def test_sources_are_downscaled_before_cutting(fresh_cache):
    ps = cached_patches("toy", "key-2", _sources(reduce=2), 8, stride=8)
    assert ps.shapes.tolist() == [[20, 28], [18, 25], [32, 32]]
    np.testing.assert_array_equal(ps.test[0], downscale(_image(36, 50, 2), 2)[:8, :8].transpose(2, 0, 1))
    stats = ps.meta["sources"][2]
    assert stats["original_shape"] == [64, 64] and stats["tiles_original"] == 64 and stats["tiles"] == 16


def test_val_holdout_shares_no_pixel_with_train(fresh_cache):
    sources = [PatchSource(f"s{i}", i == 0, lambda i=i: _image(150, 200 + 10 * i, i)) for i in range(3)]
    ps = cached_patches("toy", "key-3", sources, 32, stride=8)
    val, train = val_holdout(ps, 0.3, seed=0)
    assert len(val) > 0 and len(np.intersect1d(val, train)) == 0
    for k in np.unique(ps.train_coords[val, 0]):
        assert not ps.is_test[k]
        covered = np.zeros((2, *ps.shapes[k]), dtype=np.int64)  # (val, train) coverage of each pixel
        for row, which in ((val, 0), (train, 1)):
            for _, y, x in ps.train_coords[row][ps.train_coords[row, 0] == k]:
                covered[which, y:y + 32, x:x + 32] += 1
        assert covered[0].max() == 1  # val patches do not overlap
        assert not ((covered[0] > 0) & (covered[1] > 0)).any()


def test_patch_set_errors(fresh_cache):
    with pytest.raises(ValueError, match="smaller than the patch size 64"):
        cached_patches("toy", "key-4", _sources(reduce=2), 64)
    with pytest.raises(ValueError, match="no test source"):
        cached_patches("toy", "key-5", [s for s in _sources() if not s.test], 16)
    with pytest.raises(ValueError, match="stride must be in 1..patch_size=16"):
        cached_patches("toy", "key-6", _sources(), 16, stride=17)
    ps = cached_patches("toy", "key-1", _sources(), 16, stride=4)
    with pytest.raises(ValueError, match="val split needs val_fraction > 0"):
        split_set(ps, "val", name="toy", source="", val_fraction=0.0, seed=0)
