"""The on-disk cache of decoded data sets: uint8 ``.npy`` arrays written atomically.

Layout: ``<cache root>/<data set>/<key>/`` holds one ``.npy`` file per array and a ``meta.json``
written *last*, so a directory with a readable ``meta.json`` is complete. Every file is written to
a temporary name in the same folder and moved into place with ``os.replace`` (atomic on POSIX), so
an interrupted build never leaves a half-written array under its final name, and two processes
building the same entry at once both end with a complete copy.

The cache root is ``$DEPTHQ_CACHE`` if set, else ``~/.cache/depthq``. Delete it at any time; it is
rebuilt on the next use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "DEPTHQ_CACHE"
META_FILE = "meta.json"


def cache_root() -> Path:
    """The cache folder: ``$DEPTHQ_CACHE`` if set, else ``~/.cache/depthq``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "depthq"


def cache_key(*parts: Any) -> str:
    """A short stable hash of ``parts`` (anything with a deterministic ``repr``)."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (a ``.npy`` file) atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def npy_writer(path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> Iterator[np.memmap]:
    """Yield a writable memory map of a new ``.npy`` file, moved onto ``path`` when done.

    For arrays too large to hold in memory (downsampled ImageNet-64 is 15 GB): the caller fills
    the map slice by slice.
    """
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield out
        out.flush()
        del out


def load_npy(path: Path, *, mmap: bool = True) -> np.ndarray:
    """Read a cached ``.npy`` array, memory-mapped by default.

    The map is copy-on-write (``mmap_mode="c"``): the array is writable, so ``torch.from_numpy``
    accepts it without the non-writable warning, and a write only changes this process's private
    copy of the touched pages, never the file.
    """
    return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of a cache entry, or None if the entry is missing or incomplete."""
    try:
        return json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    """Mark a cache entry complete by writing its ``meta.json`` (atomically, last)."""
    with atomic_path(folder / META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))


def cached_arrays(
    folder: Path,
    names: tuple[str, ...],
    build: Callable[[Path], Mapping[str, Any]],
    *,
    mmap: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load the arrays ``names`` from the cache entry ``folder``, building it first if needed.

    Args:
        folder: the entry's folder, e.g. ``cache_root() / "photos" / key``.
        names: the arrays the entry holds; ``<folder>/<name>.npy`` each.
        build: called as ``build(folder)`` when the entry is missing or unreadable; it writes the
            ``.npy`` files (with ``save_npy`` or ``npy_writer``) and returns the metadata to store.
        mmap: memory-map the arrays (copy-on-write) instead of reading them into memory.

    Returns:
        ``(arrays, meta)``: the arrays by name and the entry's metadata.
    """
    meta = read_meta(folder)
    if meta is not None:
        try:
            arrays = {n: load_npy(folder / f"{n}.npy", mmap=mmap) for n in names}
            log.debug("reusing cache %s", folder)
            return arrays, meta
        except (OSError, ValueError) as err:
            log.warning("cache entry %s is unreadable (%s); rebuilding it", folder, err)
            (folder / META_FILE).unlink(missing_ok=True)
    log.info("building cache %s", folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(build(folder))
    write_meta(folder, meta)
    return {n: load_npy(folder / f"{n}.npy", mmap=mmap) for n in names}, meta
