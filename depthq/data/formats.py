"""Readers for the standard data sets' own file formats, from local folders only.

- CIFAR-10 (Krizhevsky 2009), the "python version" ``cifar-10-batches-py/``.
- Downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017, arXiv:1707.08819), the npz release
  (box-resized 32x32 and 64x64).
- Fashion-MNIST (Xiao et al. 2017), idx files, e.g. from Debian's ``dataset-fashion-mnist``.

CIFAR-10 and downsampled ImageNet store each image as one planar row: all R values (row-major),
then all G, then all B. ``reshape(N, 3, S, S)`` is therefore the (C, H, W) layout; reshaping the
row straight to (S, S, 3) scrambles the pixels (a bug in the official DQ code).

Each reader returns ``(images, labels)``: uint8 (N, C, H, W) and int64 (N,), in the file order.
Nothing is downloaded; a missing, truncated or mis-shaped file raises an error naming the
expected layout.
"""

from __future__ import annotations

import gzip
import logging
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from depthq.data import cache
from depthq.errors import DataError, MissingFileError

log = logging.getLogger(__name__)

CIFAR_LAYOUT = (
    "a folder cifar-10-batches-py/ holding data_batch_1 .. data_batch_5 and test_batch, each a "
    "Python pickle of a dict with b'data' uint8 (10000, 3072) planar R,G,B and b'labels' (10000 ints)"
)
IMAGENET_LAYOUT = (
    "a folder holding the npz release of downsampled ImageNet (Chrabaszcz et al. 2017): "
    "train_data_batch_1 .. train_data_batch_10 and val_data (with or without .npz; directly in "
    "the folder or in its sub-folders, e.g. Imagenet{S}_train_npz/ and Imagenet{S}_val_npz/), "
    "each an npz with 'data' uint8 (N, 3*{S}*{S}) planar R,G,B and 'labels' in 1..1000"
)
FASHION_LAYOUT = (
    "a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzip optional); install Debian's "
    "copy with `sudo apt-get install dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist/)"
)
STANDARD_COUNTS = {
    "cifar10": {"train": 50_000, "test": 10_000},
    "imagenet": {"train": 1_281_167, "test": 50_000},
    "fashion-mnist": {"train": 60_000, "test": 10_000},
}
IMAGENET_CACHE_VERSION = 1


def _check_count(dataset: str, split: str, n: int) -> None:
    expected = STANDARD_COUNTS[dataset][split]
    if n != expected:
        log.warning(
            "%s %s has %d images; the standard split has %d: is the copy complete?", dataset, split, n, expected
        )


# --- CIFAR-10 -------------------------------------------------------------------------------
def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # its home moved in numpy 2: try both
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, latin-1 only."""
    if encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct() for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing that runs code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a data batch holds only arrays and lists"
            ) from None


def safe_unpickle(path: Path) -> Any:
    """``pickle.load(f, encoding="bytes")`` restricted to numpy arrays and plain containers."""
    with open(path, "rb") as f:
        return _ArrayOnlyUnpickler(f, encoding="bytes").load()


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> uint8 (N, 3, 32, 32) and int64 (N,)."""
    if not path.is_file():
        raise MissingFileError(f"missing CIFAR-10 batch {path}; expected {CIFAR_LAYOUT}")
    try:
        batch = safe_unpickle(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(f"corrupt or truncated CIFAR-10 batch {path} ({err}); expected {CIFAR_LAYOUT}") from err
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {path} holds a {type(batch).__name__}, not a dict; expected {CIFAR_LAYOUT}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR-10 batch {path}: b'data' is {got}, expected uint8 (N, 3072); layout: {CIFAR_LAYOUT}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise DataError(f"CIFAR-10 batch {path}: expected {data.shape[0]} labels in 0..9, got shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels  # planar rows: (N, 3072) -> (N, C, H, W)


def read_cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 ``split`` ("train": data_batch_1..5, "test": test_batch) from ``folder``."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingFileError(f"CIFAR-10 files {missing} not found in {folder}; expected {CIFAR_LAYOUT}")
    parts = [read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    _check_count("cifar10", split, len(images))
    return images, np.concatenate([p[1] for p in parts])


# --- downsampled ImageNet (npz) -----------------------------------------------------------------
_TRAIN_RE = re.compile(r"train_data_batch_(\d+)(\.npz)?")
_VAL_RE = re.compile(r"val_data(\.npz)?")


def imagenet_files(folder: Path, split: str, size: int) -> list[Path]:
    """The npz files of ``split`` in ``folder`` or its sub-folders, in batch order (1, 2, .., 10)."""
    layout = IMAGENET_LAYOUT.format(S=size)
    if not folder.is_dir():
        raise MissingFileError(f"downsampled ImageNet folder {folder} does not exist; expected {layout}")
    pattern = _TRAIN_RE if split == "train" else _VAL_RE
    found = sorted(p for p in [*folder.iterdir(), *folder.glob("*/*")] if p.is_file() and pattern.fullmatch(p.name))
    if not found:
        want = "train_data_batch_1 .. train_data_batch_10" if split == "train" else "val_data"
        raise MissingFileError(f"no {want} files in {folder}; expected {layout}")
    if split == "test":
        if len(found) > 1:
            raise DataError(f"several val_data files in {folder}: {[str(p) for p in found]}; keep one")
        return found
    numbers = [int(pattern.fullmatch(p.name).group(1)) for p in found]  # type: ignore[union-attr]
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        raise MissingFileError(
            f"training batches in {folder} are numbered {sorted(numbers)}; expected 1..{max(numbers)} "
            f"with none missing or duplicated; layout: {layout}"
        )
    return [p for _, p in sorted(zip(numbers, found))]


def _npz_data_shape(path: Path, layout: str) -> tuple[int, ...]:
    """The shape of ``data`` in an npz file, read from its header without decompressing it."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("data.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(
                version
            )
            if reader is None:
                return tuple(np.load(path, allow_pickle=False)["data"].shape)
            shape, _, dtype = reader(f)
    except KeyError:
        raise DataError(f"{path} has no 'data' array; expected {layout}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(
            f"{path} is not a readable npz archive ({err}): corrupt or truncated? expected {layout}"
        ) from err
    if dtype != np.uint8:
        raise DataError(f"{path}: 'data' is {dtype}, expected uint8; layout: {layout}")
    return tuple(shape)


def _read_npz_batch(path: Path, size: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            data, labels = archive["data"], np.asarray(archive["labels"], dtype=np.int64).reshape(-1)
    except KeyError as err:
        raise DataError(f"{path} lacks {err}; expected {layout}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"{path} is corrupt or truncated ({err}); expected {layout}") from err
    if labels.shape != (data.shape[0],) or (len(labels) and not 1 <= labels.min() <= labels.max() <= 1000):
        raise DataError(
            f"{path}: expected {data.shape[0]} labels in 1..1000, got {labels.shape} "
            f"in {labels.min() if len(labels) else '-'}..{labels.max() if len(labels) else '-'}"
        )
    return data.reshape(-1, 3, size, size), labels - 1  # planar rows -> (N, C, H, W); labels 0..999


def _build_imagenet(files: list[Path], size: int, layout: str, out_folder: Path) -> dict[str, Any]:
    row = 3 * size * size
    counts = []
    for path in files:
        shape = _npz_data_shape(path, layout)
        if len(shape) != 2 or shape[1] != row:
            hint = ""
            if len(shape) == 2 and shape[1] % 3 == 0 and round((shape[1] // 3) ** 0.5) ** 2 == shape[1] // 3:
                hint = f" (that is 3x{round((shape[1] // 3) ** 0.5)}x{round((shape[1] // 3) ** 0.5)}: wrong folder?)"
            raise DataError(
                f"{path}: 'data' has shape {shape}, expected (N, {row}) = 3x{size}x{size} planar{hint}; "
                f"layout: {layout}"
            )
        counts.append(shape[0])
    total = sum(counts)
    labels = np.empty(total, dtype=np.int16)
    with cache.npy_writer(out_folder / "images.npy", (total, 3, size, size), np.uint8) as out:
        start = 0
        for path, n in zip(tqdm(files, desc=f"caching imagenet{size}", unit="file"), counts):
            data, lab = _read_npz_batch(path, size, layout)
            if len(data) != n:
                raise DataError(f"{path}: header says {n} images, read {len(data)}: truncated?")
            out[start : start + n] = data
            labels[start : start + n] = lab
            start += n
    cache.save_npy(out_folder / "labels.npy", labels)
    return {"files": [str(p) for p in files], "count": total, "image_size": size}


def read_imagenet(folder: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """Downsampled ImageNet ``split`` at ``size`` (32 or 64), via a memory-mapped uint8 cache.

    "train" is train_data_batch_1..10 concatenated in order; "test" is val_data (the standard
    convention: downsampled ImageNet results are reported on the official validation set).

    Returns:
        images uint8 (N, 3, S, S) memory-mapped, labels int64 (N,) in 0..999 (the files' 1..1000
        minus one), and the path of the cached ``.npy``.
    """
    layout = IMAGENET_LAYOUT.format(S=size)
    files = imagenet_files(folder, split, size)
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = cache.cache_key(stats, size, IMAGENET_CACHE_VERSION)
    entry = cache.cache_root() / f"imagenet{size}" / f"{split}-{key}"
    arrays, meta = cache.cached_arrays(
        entry, ("images", "labels"), lambda out: _build_imagenet(files, size, layout, out)
    )
    _check_count("imagenet", split, meta["count"])
    return arrays["images"], arrays["labels"].astype(np.int64), entry / "images.npy"


# --- Fashion-MNIST (idx) ------------------------------------------------------------------------
def _read_idx(folder: Path, stem: str, magic: int, ndim: int) -> np.ndarray:
    plain, gz = folder / stem, folder / f"{stem}.gz"
    path = gz if gz.is_file() else plain
    if not path.is_file():
        raise MissingFileError(f"Fashion-MNIST file {gz.name} not found in {folder}; expected {FASHION_LAYOUT}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(
            f"{path} is corrupt or truncated ({err}); expected gzipped idx files: {FASHION_LAYOUT}"
        ) from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is {len(raw)} bytes, shorter than its {header}-byte idx header: truncated?")
    got_magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])  # big-endian uint32s
    if got_magic != magic:
        raise DataError(f"{path}: idx magic number {got_magic}, expected {magic} ({FASHION_LAYOUT})")
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(
            f"{path}: header says {dims} = {int(np.prod(dims))} bytes of data, "
            f"the file holds {len(raw) - header}: truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_fashion_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train": 60k, "test": the 10k t10k files) -> (N, 1, 28, 28), (N,)."""
    if not folder.is_dir():
        raise MissingFileError(f"Fashion-MNIST folder {folder} does not exist; expected {FASHION_LAYOUT}")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(folder, f"{prefix}-images-idx3-ubyte", 2051, 3)  # (N, 28, 28)
    labels = _read_idx(folder, f"{prefix}-labels-idx1-ubyte", 2049, 1)
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(
            f"Fashion-MNIST {split} in {folder}: images {images.shape}, labels {labels.shape}; "
            "expected (N, 28, 28) and (N,)"
        )
    _check_count("fashion-mnist", split, len(images))
    return images[:, None].copy(), labels.astype(np.int64)  # (N, 1, 28, 28), writable
