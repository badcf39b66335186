"""The codes a prior learns from: a run's images encoded once, cached as uint16 sequences.

``RunData.of_config(run_config, channels)`` says which data set, image size, hold-out and seed an
autoencoder run used; ``cached_codes`` encodes a split with the trained model (eval mode, fp32) into code
sequences (N, T, M) in the prior's order (``CodeLayout.to_sequence``) and stores them in the
data cache (``$DEPTHQ_CACHE/codes/<key>/codes.npy``, keyed by the weights' digest, the split
and the data settings), so later runs, and resumed ones, skip the encoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from depthq.config import RunConfig
from depthq.data import ImageDataModule, ImageSet, dataset_info, get_dataset
from depthq.data.cache import cache_key, cache_root, cached_arrays, save_npy
from depthq.errors import CorruptFileError
from depthq.prior.layout import CodeLayout

log = logging.getLogger(__name__)

#: held out of the training split for the prior's validation when the run kept no val split
FALLBACK_VAL_FRACTION = 0.05
_CACHE_VERSION = 1


@dataclass(frozen=True)
class RunData:
    """The data of an autoencoder run, as its prior and its codec read them.

    Attributes:
        name, root: the data set (``depthq.data.get_dataset``).
        image_size: side of the images: the last stage of the run's schedule.
        image_channels: C.
        val_fraction: the share of the training split held out as "val" (the run's, or
            ``FALLBACK_VAL_FRACTION`` if it kept none).
        seed: the run's seed (it fixes the hold-out).
    """

    name: str
    root: str | None
    image_size: int
    image_channels: int
    val_fraction: float
    seed: int

    @classmethod
    def of_config(cls, run: RunConfig, image_channels: int) -> RunData:
        """From a run's typed config: its data module names the set that serves the last stage's
        image size (imagenet32 or imagenet64 for a progressive run). Reads no file."""
        return cls.of_datamodule(run.datamodule(), run, image_channels)

    @classmethod
    def of_datamodule(cls, dm: ImageDataModule, run: RunConfig, image_channels: int) -> RunData:
        """``of_config`` with the run's data module already built."""
        size = dm.stages[-1].image_size
        name, _ = dm.source(size)
        val_fraction = run.data.val_fraction
        if not val_fraction:
            log.warning(
                "the run kept no val split: the prior validates on %.0f%% of the training "
                "images, held out from its own training",
                100 * FALLBACK_VAL_FRACTION,
            )
            val_fraction = FALLBACK_VAL_FRACTION
        return cls(name, run.data.root, int(size), image_channels, float(val_fraction), int(run.train.seed))

    def images(self, split: str) -> ImageSet:
        """The ``split`` ("train", "val", "test") of the run's data set."""
        size = self.image_size if dataset_info(self.name).native_size is None else None
        return get_dataset(
            self.name,
            split,
            root=self.root,
            image_size=size,
            val_fraction=0.0 if split == "test" else self.val_fraction,
            seed=self.seed,
        )


def subset_rows(n: int, max_images: int | None, seed: int) -> torch.Tensor:
    """Rows 0..n-1, or a seeded sorted subset of ``max_images`` of them."""
    if max_images is None or n <= max_images:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].sort().values


@torch.no_grad()
def encode_sequences(
    model,
    images: ImageSet,
    rows: torch.Tensor,
    layout: CodeLayout,
    *,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "encoding",
) -> np.ndarray:
    """Codes of ``images[rows]`` as sequences (N, T, M) uint16, encoded in fp32."""
    device = next(model.parameters()).device
    out = np.empty((len(rows), layout.total_positions, layout.codebooks), dtype=np.uint16)
    with torch.autocast(device.type, enabled=False):
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
            x = images.batch(rows[start : start + batch_size]).to(device)
            out[start : start + len(x)] = layout.to_sequence(model.encode(x)).cpu().numpy()
    return out


def cached_codes(
    model,
    digest: str,
    data: RunData,
    split: str,
    layout: CodeLayout,
    *,
    max_images: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """The code sequences (N, T, M) uint16 of a split, from the cache or encoded into it.

    ``digest`` names the weights (``state_digest(model)``); a different model, split, data
    setting or subset is a different cache entry.
    """
    key = cache_key("codes", _CACHE_VERSION, digest, data, split, max_images)
    folder = Path(cache_root()) / "codes" / key

    def build(folder: Path) -> dict:
        images = data.images(split)
        rows = subset_rows(len(images), max_images, data.seed)
        codes = encode_sequences(
            model, images, rows, layout, batch_size=batch_size, progress=progress, desc=f"encoding the {split} split"
        )
        save_npy(folder / "codes.npy", codes)
        return {"images": len(rows), "split": split, "data": data.name, "digest": digest, "layout": layout.to_dict()}

    arrays, meta = cached_arrays(folder, ("codes",), build, mmap=False)
    codes = arrays["codes"]
    if codes.shape[1:] != (layout.total_positions, layout.codebooks):
        raise CorruptFileError(
            f"cached codes in {folder} have shape {codes.shape}, not of this layout; delete the folder"
        )
    return codes
