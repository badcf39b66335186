"""The ``scenes`` data set on a fake wallpaper tree (tiny JPEGs at the packages' paths): the list,
the split by scene, the 4x box downscaling, the missing-package error and the fallback choice.

Nothing here needs the Debian packages: every test points the reader at a temporary tree.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthq.cli import main
from depthq.data import get_dataset
from depthq.data import patches as patches_module
from depthq.data.patches import downscale
from depthq.data.photos import PHOTOS
from depthq.data.scenes import (
    PACKAGES,
    REDUCE,
    WALLPAPERS,
    choose_photo_set,
    scene_images,
    scene_patches,
    wallpaper_file,
)

SIZE = 32  # the default patch size


def _fake_pixels(k: int, h: int, w: int) -> np.ndarray:
    """A smooth colour pattern, different per wallpaper (JPEG keeps it close)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 2 + k * 9) % 256, (y * 3 + k * 5) % 256, ((x + y) + k * 17) % 256], -1).astype(np.uint8)


def write_tree(root: Path, skip: tuple[str, ...] = ()) -> Path:
    """Every listed wallpaper as a 160 x 192 JPEG (Grey as a greyscale JPEG) under ``root``."""
    for k, w in enumerate(WALLPAPERS):
        if w.name in skip:
            continue
        path = wallpaper_file(w, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(_fake_pixels(k, 160, 192))
        (image.convert("L") if w.name == "Grey" else image).save(path, quality=95)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fake tree for the module: its patches are cut once into the session's cache."""
    return write_tree(tmp_path_factory.mktemp("wallpapers"))


def test_the_list_is_split_by_scene_with_the_photos_test_side_kept():
    images = scene_images()
    assert len(images) == len(PHOTOS) + len(WALLPAPERS) == 49
    scenes = {i.scene for i in images}
    test_scenes = {i.scene for i in images if i.test}
    assert len(scenes) == 48 and len(test_scenes) == 10  # the stereo pair is one scene
    assert test_scenes.isdisjoint({i.scene for i in images if not i.test})  # no scene on both sides
    assert {"chelsea", "coffee", "china"} <= test_scenes
    assert {p.name for p in PHOTOS if p.test} == {i.name for i in images[:len(PHOTOS)] if i.test}
    assert len({w.path for w in WALLPAPERS}) == len(WALLPAPERS) and {w.package for w in WALLPAPERS} == set(PACKAGES)
    assert all(w.licence and w.path.endswith(".jpg") for w in WALLPAPERS)
    names = " ".join(w.path for w in WALLPAPERS)
    for artwork in ("umang", "Fossa", "Infinite-Sea", "Painting-Colors", "/Autumn/", "/Flow/", "mate/abstract"):
        assert artwork not in names


def test_scenes_are_the_bundled_photos_plus_the_wallpapers_downscaled(tree):
    test = get_dataset("scenes", "test", root=tree)
    ps = scene_patches(SIZE, root=tree)
    k = len(PHOTOS) + next(i for i, w in enumerate(WALLPAPERS) if w.test)  # the first test wallpaper
    assert ps.shapes[k].tolist() == [160 // REDUCE, 192 // REDUCE]
    with Image.open(wallpaper_file(WALLPAPERS[k - len(PHOTOS)], tree)) as im:
        expected = downscale(np.asarray(im.convert("RGB")), REDUCE)  # (40, 48, 3)
    row = np.flatnonzero(ps.test_coords[:, 0] == k)[0]
    np.testing.assert_array_equal(test[int(row)].numpy(), expected[:SIZE, :SIZE].transpose(2, 0, 1))
    # every photo is there: the bundled ones at full size, 40x48 wallpapers -> 1 test patch each
    photos_test = get_dataset("photos", "test")
    n_test_walls = sum(w.test for w in WALLPAPERS)
    assert len(test) == len(photos_test) + n_test_walls
    np.testing.assert_array_equal(test.images[:len(photos_test)].numpy(), photos_test.images.numpy())
    grey = len(PHOTOS) + [w.name for w in WALLPAPERS].index("Grey")
    grey_patch = ps.train[np.flatnonzero(ps.train_coords[:, 0] == grey)[0]]
    assert (grey_patch[0] == grey_patch[1]).all() and (grey_patch[1] == grey_patch[2]).all()  # R = G = B
    assert "49 real photographs of 48 scenes" in test.describe() and "box-downscaled 4x" in test.describe()


def test_val_is_held_out_of_training_photos_only(tree):
    val = get_dataset("scenes", "val", root=tree, val_fraction=0.1, seed=3)
    train = get_dataset("scenes", "train", root=tree, val_fraction=0.1, seed=3)
    full = get_dataset("scenes", "train", root=tree)
    assert len(val) > 0 and len(train) < len(full)
    ps = scene_patches(SIZE, root=tree)
    rows = val._rows.numpy()  # val is a view of the training patches
    assert not ps.is_test[ps.train_coords[rows, 0]].any()


def test_the_environment_variable_points_at_the_tree(tree, monkeypatch):
    monkeypatch.setenv("DEPTHQ_WALLPAPERS", str(tree))
    assert len(get_dataset("scenes", "test")) == len(get_dataset("scenes", "test", root=tree))


def test_missing_packages_raise_with_the_install_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y lomiri-wallpapers-16\.04 .*'photos'"):
        get_dataset("scenes", root=tmp_path)
    partial = write_tree(tmp_path / "partial", skip=("Storm",))
    with pytest.raises(FileNotFoundError, match=r"Debian packages mate-backgrounds, not found"):
        get_dataset("scenes", "test", root=partial)


def test_choose_photo_set_falls_back_with_a_warning(tree, tmp_path, caplog):
    chosen = choose_photo_set(tree)
    assert (chosen.name, chosen.fallback) == ("scenes", False)
    with caplog.at_level(logging.WARNING):
        fallback = choose_photo_set(tmp_path / "nothing")
    assert (fallback.name, fallback.fallback) == ("photos", True)
    assert "NOT scenes" in fallback.message and "apt-get install -y" in fallback.message
    assert fallback.message in caplog.text


def test_a_changed_wallpaper_rebuilds_the_cache(tmp_path, fresh_cache, monkeypatch):
    own = write_tree(tmp_path / "own")
    calls = []
    real = patches_module._build
    monkeypatch.setattr(patches_module, "_build", lambda *a: calls.append(1) or real(*a))
    first = scene_patches(SIZE, stride=SIZE, root=own)  # a coarse grid builds fast
    scene_patches(SIZE, stride=SIZE, root=own)
    assert len(calls) == 1 and first.folder.is_relative_to(fresh_cache)
    write_tree(own)  # rewritten files: new modification times
    scene_patches(SIZE, stride=SIZE, root=own)
    assert len(calls) == 2


def test_data_info_scenes_prints_licences_and_sizes(tree, capsys):
    assert main(["data", "info", "scenes", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "CC0-1.0 (2018, Clemens Engelhardt)" in out and "mate-backgrounds" in out
    assert "40 x 48 (/4 of 160 x 192)" in out and "motorcycle_left (scene motorcycle)" in out
    assert main(["data", "info", "scenes", "--root", str(tree / "missing")]) == 2
    assert "apt-get install" in capsys.readouterr().err
