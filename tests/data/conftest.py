"""Fixtures for the data tests: an isolated cache, and writers of tiny files in the real formats.

Every writer lays out pixel bytes by the format's own rule (planar: byte c*S*S + row*S + col of an
image row is channel c at (row, col)), from ``pixel_value``, so a reader that reshapes or
transposes wrongly reads different values. Nothing here downloads anything.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def pixel_value(n: np.ndarray | int, c: np.ndarray | int, row: np.ndarray | int, col: np.ndarray | int,
                salt: int = 0) -> np.ndarray:
    """The test pattern: a uint8 value that differs between images, channels, rows and columns."""
    return ((np.asarray(n) * 37 + np.asarray(c) * 101 + np.asarray(row) * 7 + np.asarray(col) * 3 + salt) % 256
            ).astype(np.uint8)


def planar_rows(first: int, count: int, size: int, salt: int = 0) -> np.ndarray:
    """uint8 (count, 3*size*size): image rows in the planar layout, built byte by byte."""
    rows = np.empty((count, 3 * size * size), dtype=np.uint8)
    n, c, row, col = np.meshgrid(np.arange(count), np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    flat = c * size * size + row * size + col  # where the format puts channel c, pixel (row, col)
    rows[n, flat] = pixel_value(first + n, c, row, col, salt)
    return rows


def expected_images(first: int, count: int, size: int, channels: int = 3, salt: int = 0) -> np.ndarray:
    """uint8 (count, C, size, size): what a correct reader returns for ``planar_rows``."""
    n, c, row, col = np.meshgrid(np.arange(count), np.arange(channels), np.arange(size), np.arange(size),
                                 indexing="ij")
    return pixel_value(first + n, c, row, col, salt)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder for this test only."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DEPTHQ_CACHE", str(folder))
    return folder


CIFAR_PER_BATCH = 4


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A parent folder holding ``cifar-10-batches-py/`` with 5 train batches and a test batch.

    Train image i (batch i // 4 + 1, position i % 4) has pattern index i; test image j has j, salt 1.
    Labels are i % 10.
    """
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        first = 0 if name == "test_batch" else b * CIFAR_PER_BATCH
        salt = 1 if name == "test_batch" else 0
        batch = {
            b"batch_label": name.encode(),
            b"labels": [(first + k) % 10 for k in range(CIFAR_PER_BATCH)],
            b"data": planar_rows(first, CIFAR_PER_BATCH, 32, salt),
            b"filenames": [f"img{first + k}.png".encode() for k in range(CIFAR_PER_BATCH)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)  # the released files are protocol-2 pickles
    return tmp_path


IMAGENET_PER_BATCH = 3


def write_imagenet_npz(path: Path, first: int, count: int, size: int, salt: int = 0) -> None:
    """One downsampled-ImageNet npz file (written through a file object: no '.npz' is appended)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, data=planar_rows(first, count, size, salt),
                 labels=np.array([(first + k) % 1000 + 1 for k in range(count)]),  # 1..1000 as released
                 mean=np.zeros(3 * size * size))


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    """A parent with ``imagenet32/`` (flat, ``.npz`` names) and ``imagenet64/`` (the two release
    sub-folders, names without suffix), 10 train batches of 3 images each and a val_data of 5.

    Train image i (batch i // 3 + 1) has pattern index i; val image j has j, salt 2.
    """
    for size in (32, 64):
        top = tmp_path / f"imagenet{size}"
        for b in range(1, 11):
            name = f"train_data_batch_{b}.npz" if size == 32 else f"Imagenet{size}_train_npz/train_data_batch_{b}"
            write_imagenet_npz(top / name, (b - 1) * IMAGENET_PER_BATCH, IMAGENET_PER_BATCH, size)
        val = "val_data.npz" if size == 32 else f"Imagenet{size}_val_npz/val_data"
        write_imagenet_npz(top / val, 0, 5, size, salt=2)
    return tmp_path


def write_idx(path: Path, magic: int, array: np.ndarray, compress: bool = True) -> None:
    """An idx file: big-endian magic and dimensions, then the uint8 bytes."""
    raw = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    """A ``fashion-mnist/`` folder: 6 train and 2 test images; pixel (n, row, col) = pattern (n, 0, row, col)."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix, count, salt in (("train", 6, 0), ("t10k", 2, 3)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051, expected_images(0, count, 28, 1, salt)[:, 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.arange(count) % 10)
    return folder


@pytest.fixture
def fmt() -> SimpleNamespace:
    """The helpers above, for tests (a conftest module is not importable by name)."""
    return SimpleNamespace(pixel_value=pixel_value, planar_rows=planar_rows, expected=expected_images,
                           write_npz=write_imagenet_npz, write_idx=write_idx,
                           cifar_per_batch=CIFAR_PER_BATCH, imagenet_per_batch=IMAGENET_PER_BATCH)
