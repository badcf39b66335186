"""``folder``: any directory of PNG/JPEG images, resized to square uint8 RGB images.

Every ``.png``, ``.jpg`` and ``.jpeg`` file (any case) under the folder, recursively, sorted by
relative path, is read with Pillow, converted to 8-bit RGB (``to_rgb``: greyscale is replicated to
3 channels, alpha dropped, 16-bit greyscale scaled to 8 bits), resized so its *shorter* side is
``image_size`` with the BOX filter (the area average the downsampled ImageNet release used), and
center-cropped to ``image_size`` x ``image_size``.

Test split: an image is a test image when the SHA-1 of its relative path falls in the lowest
``TEST_FRACTION`` (10%) of the hash range; at least one image is test when there are two or more.
The split depends only on the file's name, so it is stable when images are added or removed and
is the same at every image size and seed.

The decoded images are cached (uint8 ``.npy``) under a key of the folder's absolute path, the
image size, and every file's relative path, size and modification time: editing the folder
rebuilds the cache.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from depthq.data import cache
from depthq.errors import DataError, MissingFileError

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.1
FOLDER_VERSION = 2  # 2: 16-bit greyscale is scaled to 8 bits (version 1 clipped it at 255)
FOLDER_LAYOUT = "a folder containing .png / .jpg / .jpeg images (searched recursively)"


def list_images(root: Path) -> list[Path]:
    """The image files under ``root``, sorted by their path relative to it."""
    if not root.is_dir():
        raise MissingFileError(f"image folder {root} does not exist; expected {FOLDER_LAYOUT}")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not found:
        raise MissingFileError(f"no .png/.jpg/.jpeg images under {root}; expected {FOLDER_LAYOUT}")
    return found


# Pillow's modes for 16-bit greyscale: PNG opens as I;16 (older Pillow: I, a 32-bit mode holding 0..65535)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, every bit depth scaled to 0..255.

    16-bit greyscale (``SIXTEEN_BIT_MODES``; mode I is read as 0..65535) becomes
    ``round(v * 255 / 65535)``: Pillow's own ``convert`` clips it at 255 instead, so a normal
    16-bit photograph turns almost white. 16-bit RGB(A) and grey+alpha PNGs are already opened by
    Pillow as 8-bit modes (the high byte of each value, within one level of the scaled value).
    Greyscale is replicated to 3 channels and alpha is dropped.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)  # (H, W) uint16 or int32
        image = Image.fromarray(np.clip(np.rint(values * (255 / 65535)), 0, 255).astype(np.uint8))  # mode L
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """RGB (``to_rgb``), shorter side resized to ``size`` (BOX filter), center crop -> uint8 (3, size, size)."""
    image = to_rgb(image)
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BOX)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def holdout_mask(relative_paths: list[str], fraction: float = TEST_FRACTION) -> np.ndarray:
    """bool (N,): which images are test, by the SHA-1 of their relative path (see module doc)."""
    scores = np.array([int(hashlib.sha1(p.encode()).hexdigest()[:12], 16) / 16**12 for p in relative_paths])
    mask = scores < fraction
    if not mask.any() and len(relative_paths) >= 2:
        mask[np.argmin(scores)] = True
    return mask


def _build(out: Path, root: Path, paths: list[Path], size: int) -> dict[str, Any]:
    relative = [p.relative_to(root).as_posix() for p in paths]
    with cache.npy_writer(out / "images.npy", (len(paths), 3, size, size), np.uint8) as images:
        for i, path in enumerate(tqdm(paths, desc=f"reading {root.name}/ at {size}x{size}", unit="image")):
            try:
                with Image.open(path) as im:
                    images[i] = resize_center_crop(im, size)
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise DataError(
                    f"cannot read image {path} ({err}): corrupt or truncated? expected {FOLDER_LAYOUT}"
                ) from err
    cache.save_npy(out / "test_mask.npy", holdout_mask(relative))
    return {"root": str(root), "image_size": size, "files": relative}


def read_folder(root: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """All images of ``root`` at ``image_size``, via the cache.

    Returns:
        images uint8 (N, 3, S, S) memory-mapped, test mask bool (N,), the cached ``.npy`` path.
    """
    root = root.resolve()
    paths = list_images(root)
    stats = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    key = cache.cache_key(str(root), image_size, stats, TEST_FRACTION, FOLDER_VERSION)
    entry = cache.cache_root() / "folder" / f"{root.name}-{image_size}-{key}"
    arrays, _ = cache.cached_arrays(entry, ("images", "test_mask"), lambda out: _build(out, root, paths, image_size))
    return arrays["images"], np.asarray(arrays["test_mask"], dtype=bool), entry / "images.npy"
