"""``ImageSet``: one split of an image data set, as uint8 pixels (N, C, H, W) in 0..255.

Every reader in ``depthq.data`` returns one. Pixels stay integers all the way to the model, which
normalises on the inside: bits/dim is computed on the exact 0..255 values, never on floats that
were rounded back.

A set may be a *view* of a larger storage tensor (``rows``): the training split minus a validation
hold-out of downsampled ImageNet-64 is 15 GB, memory-mapped from the cache, and is never copied;
``batch`` gathers only the rows a batch needs. ``images`` materialises the split on first access.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from depthq.data.cache import load_npy
from depthq.errors import DataError

log = logging.getLogger(__name__)

_LARGE_BYTES = 2**30  # materialising a view larger than this is logged


class ImageSet(Dataset):
    """A split of an image data set: ``len(s)`` images of shape (C, H, W), dtype uint8.

    Example::

        s = get_dataset("photos", "train")   # ImageSet
        s.images.shape                       # (N, 3, 32, 32), torch.uint8
        s[0].shape                           # (3, 32, 32)
        s.batch(torch.tensor([4, 2])).shape  # (2, 3, 32, 32)

    Args:
        images: uint8 storage (M, C, H, W); the set is all of it, or ``storage[rows]``.
        name: the data set's name ("photos", "cifar10", ...).
        split: "train", "val" or "test".
        labels: int64 (M,) class labels aligned with the storage, or None.
        rows: int64 (N,) indices into the storage that make up this set, or None for all M.
        source: one line saying where the pixels came from (for ``describe``).
        mmap_path: the ``.npy`` file the storage is memory-mapped from, if any; a pickled set
            (a DataLoader worker under "spawn") then re-opens the map instead of copying pixels.
    """

    def __init__(
        self,
        images: Tensor,
        *,
        name: str,
        split: str,
        labels: Tensor | None = None,
        rows: Tensor | None = None,
        source: str = "",
        mmap_path: str | Path | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
            raise DataError(f"ImageSet needs a uint8 tensor (N, C, H, W); got {got}")
        if labels is not None and labels.shape != (images.shape[0],):
            raise DataError(f"labels must have shape ({images.shape[0]},); got {tuple(labels.shape)}")
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.int64)
            if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= images.shape[0])):
                raise DataError(f"rows must be 1-D indices in [0, {images.shape[0]}); got {tuple(rows.shape)}")
        self._storage = images.contiguous()
        self._labels = labels
        self._rows = rows
        self._materialised: Tensor | None = None
        self.name = name
        self.split = split
        self.source = source
        self.mmap_path = Path(mmap_path) if mmap_path is not None else None

    # --- the pixels -----------------------------------------------------------------------
    @property
    def images(self) -> Tensor:
        """All images of the split, uint8 (N, C, H, W), contiguous (copied once for a view)."""
        if self._rows is None:
            return self._storage
        if self._materialised is None:
            nbytes = len(self._rows) * self._storage[0].numel()
            if nbytes > _LARGE_BYTES:
                log.warning(
                    "materialising %s/%s: %.1f GB; use .batch() to avoid the copy", self.name, self.split, nbytes / 1e9
                )
            self._materialised = self._storage[self._rows]
        return self._materialised

    @property
    def labels(self) -> Tensor | None:
        """int64 (N,) class labels, or None where the data set has none (photos, folder)."""
        if self._labels is None or self._rows is None:
            return self._labels
        return self._labels[self._rows]

    def __len__(self) -> int:
        return self._storage.shape[0] if self._rows is None else len(self._rows)

    def __getitem__(self, index: int) -> Tensor:
        """The image ``index`` as uint8 (C, H, W)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name}/{self.split} of {n} images")
        index %= n
        return self._storage[index if self._rows is None else int(self._rows[index])]

    def batch(self, indices: Tensor) -> Tensor:
        """The images at ``indices`` (B,) as uint8 (B, C, H, W), reading only those rows."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return self._storage[indices if self._rows is None else self._rows[indices]]

    def subset(self, indices: Tensor, *, split: str | None = None) -> ImageSet:
        """A view of this set's images at ``indices`` (K,), sharing its storage."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        rows = indices if self._rows is None else self._rows[indices]
        return ImageSet(
            self._storage,
            name=self.name,
            split=split or self.split,
            labels=self._labels,
            rows=rows,
            source=self.source,
            mmap_path=self.mmap_path,
        )

    # --- shape facts ----------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        """C: 3 for colour sets, 1 for Fashion-MNIST."""
        return self._storage.shape[1]

    @property
    def image_size(self) -> int:
        """H (= W: every set here has square images)."""
        return self._storage.shape[2]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, H, W)."""
        return (len(self), *self._storage.shape[1:])

    def describe(self) -> str:
        """A few readable lines: name, split, count, shape, dtype, source."""
        n, c, h, w = self.shape
        lines = [
            f"{self.name} [{self.split}]: {n:,} images of {c}x{h}x{w} (C x H x W), uint8 0..255",
            f"source: {self.source}" if self.source else "",
            f"memory-mapped from {self.mmap_path}" if self.mmap_path else "",
        ]
        return "\n".join(line for line in lines if line)

    def __repr__(self) -> str:
        n, c, h, w = self.shape
        return f"ImageSet(name={self.name!r}, split={self.split!r}, n={n}, shape=({c}, {h}, {w}))"

    # --- pickling: re-open a memory map instead of copying its pixels ------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_materialised"] = None
        if self.mmap_path is not None:
            state["_storage"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._storage is None:
            self._storage = torch.from_numpy(load_npy(self.mmap_path))


def from_numpy(array: np.ndarray, **kwargs: Any) -> ImageSet:
    """An ``ImageSet`` over a uint8 (N, C, H, W) numpy array (memory-mapped or not).

    No copy, except for a read-only array (e.g. ``np.frombuffer``), which torch cannot wrap safely.
    """
    if not array.flags.writeable:
        array = array.copy()
    return ImageSet(torch.from_numpy(array), **kwargs)
