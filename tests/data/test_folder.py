"""The ``folder`` data set: discovery, resize + center crop, the hash split, the cache, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthq.data import folder as folder_module
from depthq.data import get_dataset
from depthq.data.folder import holdout_mask, list_images, resize_center_crop


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """20 small PNG images (a few nested, mixed case) plus files that are not images."""
    root = tmp_path / "pics"
    rng = np.random.default_rng(0)
    for i in range(20):
        name = f"sub/img{i:02d}.PNG" if i % 5 == 0 else f"img{i:02d}.png"
        _save(root / name, rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_discovery_is_recursive_sorted_and_case_insensitive(image_dir):
    found = [p.relative_to(image_dir).as_posix() for p in list_images(image_dir)]
    assert len(found) == 20 and found == sorted(found) and "sub/img05.PNG" in found


def test_center_crop_keeps_the_middle_pixels_exactly():
    # 32 high, 64 wide: the shorter side already is 32, so the crop is columns 16..47, unresized.
    array = np.zeros((32, 64, 3), np.uint8)
    array[..., 0] = np.arange(64)[None, :]  # red = column
    array[..., 1] = np.arange(32)[:, None]  # green = row
    out = resize_center_crop(Image.fromarray(array), 32)  # (3, 32, 32)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], np.tile(np.arange(16, 48), (32, 1)))
    np.testing.assert_array_equal(out[1], np.tile(np.arange(32)[:, None], (1, 32)))
    assert (out[2] == 0).all()


def test_resize_is_a_box_average_and_greyscale_becomes_rgb():
    grey = np.repeat(np.repeat(np.array([[0, 100], [200, 40]], np.uint8), 2, 0), 2, 1)  # 4x4 of 2x2 blocks
    grey[0, 0] = 4  # the top-left 2x2 block averages (4 + 0 + 0 + 0) / 4 = 1
    out = resize_center_crop(Image.fromarray(grey, mode="L"), 2)
    expected = np.array([[1, 100], [200, 40]], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[c], expected)


def test_splits_are_disjoint_stable_and_cover_the_folder(image_dir):
    train = get_dataset("folder", "train", root=image_dir)
    test = get_dataset("folder", "test", root=image_dir, image_size=16)
    all_names = [p.relative_to(image_dir).as_posix() for p in list_images(image_dir)]
    mask = holdout_mask(all_names)
    assert len(train) == int((~mask).sum()) and len(test) == int(mask.sum()) >= 1
    assert train.shape[1:] == (3, 32, 32) and test.shape[1:] == (3, 16, 16)
    # the images themselves: train = the non-test files in sorted order
    first_train = all_names[int(np.flatnonzero(~mask)[0])]
    with Image.open(image_dir / first_train) as im:
        np.testing.assert_array_equal(train[0].numpy(), resize_center_crop(im, 32))
    # adding an image never moves an existing image across the split
    _save(image_dir / "zz_new.png", np.zeros((40, 40, 3), np.uint8))
    grown = holdout_mask(sorted(all_names + ["zz_new.png"]))
    old_positions = [sorted(all_names + ["zz_new.png"]).index(n) for n in all_names]
    assert (grown[old_positions] == mask).all()
    val = get_dataset("folder", "val", root=image_dir, val_fraction=0.25)
    rest = get_dataset("folder", "train", root=image_dir, val_fraction=0.25)
    assert len(val) + len(rest) == len(get_dataset("folder", "train", root=image_dir))


def test_folder_cache_is_reused_and_rebuilt_when_a_file_changes(image_dir, fresh_cache, monkeypatch):
    calls = []
    real_build = folder_module._build
    monkeypatch.setattr(folder_module, "_build", lambda *a: calls.append(1) or real_build(*a))
    first = get_dataset("folder", "test", root=image_dir)
    get_dataset("folder", "train", root=image_dir)
    assert len(calls) == 1
    target = list_images(image_dir)[0]
    _save(target, np.full((40, 48, 3), 7, np.uint8))
    os.utime(target, ns=(1, 1))  # a different mtime, whatever the clock resolution
    get_dataset("folder", "test", root=image_dir)
    assert len(calls) == 2
    assert first.images.dtype == torch.uint8


def test_folder_errors(tmp_path, image_dir):
    with pytest.raises(ValueError, match="needs root="):
        get_dataset("folder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_dataset("folder", root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .png/.jpg/.jpeg images"):
        get_dataset("folder", root=tmp_path / "empty")
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(ValueError, match="broken.jpg.*corrupt or truncated"):
        get_dataset("folder", root=image_dir)


def _png16_rgb(path: Path, values: np.ndarray) -> None:
    """A 16-bit RGB PNG written chunk by chunk (Pillow cannot write one): values uint16 (H, W, 3)."""
    import struct
    import zlib

    h, w, _ = values.shape
    raw = b"".join(b"\x00" + values[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_pngs_are_scaled_to_8_bits_not_clipped(tmp_path, fresh_cache):
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 65536, (32, 32), dtype=np.uint16)  # a full-range 16-bit photo
    root = tmp_path / "sixteen"
    root.mkdir()
    Image.fromarray(grey).save(root / "grey16.png")  # Pillow writes mode I;16 as a 16-bit PNG
    with Image.open(root / "grey16.png") as im:
        assert im.mode == "I;16"
    colour = rng.integers(0, 65536, (32, 32, 3), dtype=np.uint16)
    _png16_rgb(root / "rgb16.png", colour)
    images = {}
    for name in ("grey16.png", "rgb16.png"):
        with Image.open(root / name) as im:
            images[name] = resize_center_crop(im, 32)  # 32 x 32 already: no resampling
    expected = np.rint(grey * (255 / 65535)).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(images["grey16.png"][c], expected)  # was 255 almost everywhere
    assert abs(float(images["grey16.png"].mean()) - float(grey.mean()) / 257) < 0.01
    scaled = np.rint(colour * (255 / 65535)).transpose(2, 0, 1)
    assert np.abs(images["rgb16.png"].astype(int) - scaled).max() <= 1  # Pillow keeps the high byte
    data = get_dataset("folder", "train", root=root).images.numpy()
    data = np.concatenate([data, get_dataset("folder", "test", root=root).images.numpy()])
    assert len(np.unique(data)) > 200 and data.mean() < 200  # the data set sees the scaled pixels
