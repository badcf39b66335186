"""``ImageDataModule``: training, validation and test loaders with a progressive-size schedule.

One DataLoader serves every stage of the schedule: the sampler (``StagedBatchSampler``) yields a
``BatchKey(step, stage, indices)`` per step, and the map-style ``StagedBatches`` turns it into the
uint8 batch (B, C, H, W) of that stage's training set, augmented with a generator seeded by
(seed, step). The loader runs with ``batch_size=None`` (the sampler already makes batches), so a
step's batch always comes from one stage and one image size, with or without worker processes.

The training loader is infinite: give the trainer ``max_steps`` (``datamodule.total_steps`` when
every stage has a step count) and an integer ``val_check_interval`` with
``check_val_every_n_epoch=None``. A schedule's steps count batches; the loader starts at
``trainer.global_step * trainer.accumulate_grad_batches`` when attached to a trainer (so a resumed
run continues the exact data order), else at ``self.start_step``. Under distributed training
(give the trainer ``use_distributed_sampler=False``) each step draws a global batch of
``batch_size * world_size`` images and every rank takes its own slice.

Example::

    dm = ImageDataModule("photos", batch_size=32, schedule=[(32, 10_000), (64, 5_000)])
    trainer = lightning.Trainer(max_steps=dm.total_steps, val_check_interval=1000,
                                check_val_every_n_epoch=None)
    trainer.fit(model, datamodule=dm)   # model sees uint8 (32, 3, 32, 32), then (32, 3, 64, 64)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from depthq.data.augment import AugmentDraw, apply_augmentation, draw_augmentation
from depthq.data.imageset import ImageSet
from depthq.data.registry import check_image_size, dataset_info, get_dataset
from depthq.data.schedule import (
    BatchKey,
    Stage,
    StagedBatchSampler,
    StageLike,
    mix_seed,
    parse_schedule,
    stage_index,
)
from depthq.errors import DataError

log = logging.getLogger(__name__)

_AUGMENT_SALT = 0x5EED  # keeps augmentation randomness apart from the data-order streams


class BatchDraw(NamedTuple):
    """A training batch before its pixels are read: the rows of its stage's training set and its
    augmentation's randomness, all drawn on the CPU. ``pixels`` turns it into the batch wherever
    the images are (the CPU, or an accelerator holding the training sets)."""

    stage: int  # index into the schedule
    indices: Tensor  # int64 (B,): rows of that stage's training set
    augmentation: AugmentDraw | None  # None: no flip, no crop


def pixels(images: Tensor, draw: BatchDraw) -> Tensor:
    """The uint8 batch (B, C, H, W) of ``draw`` from its stage's images (N, C, H, W), on their
    device; nothing is read on the host."""
    batch = images[draw.indices.to(images.device)]
    return batch if draw.augmentation is None else apply_augmentation(batch, draw.augmentation)


class StagedBatches(Dataset):
    """Map-style data set indexed by ``BatchKey``: returns that step's uint8 batch (B, C, H, W),
    or with ``draws_only`` its ``BatchDraw`` (the pixels are then read where the images are)."""

    def __init__(
        self,
        sets: Sequence[ImageSet],
        *,
        seed: int,
        flip: bool,
        crop_padding: int,
        rank: int = 0,
        draws_only: bool = False,
    ) -> None:
        self.sets = list(sets)
        self.seed, self.flip, self.crop_padding, self.rank = seed, flip, crop_padding, rank
        self.draws_only = draws_only

    def draw(self, key: BatchKey) -> BatchDraw:
        augmentation = None
        if self.flip or self.crop_padding:
            # seeded by (seed, step, rank): each rank's slice of the global batch draws its own
            generator = torch.Generator().manual_seed(mix_seed(self.seed, key.step, self.rank, _AUGMENT_SALT))
            augmentation = draw_augmentation(
                len(key.indices), flip=self.flip, crop_padding=self.crop_padding, generator=generator
            )
        return BatchDraw(key.stage, key.indices, augmentation)

    def __getitem__(self, key: BatchKey) -> Tensor | BatchDraw:
        draw = self.draw(key)
        if self.draws_only:
            return draw
        batch = self.sets[key.stage].batch(key.indices)  # (B, C, H, W) uint8, only those rows
        return batch if draw.augmentation is None else apply_augmentation(batch, draw.augmentation)


class _Batches(Dataset):
    """Map-style view of an ``ImageSet`` indexed by lists of indices (for ``BatchSampler``)."""

    def __init__(self, images: ImageSet) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]) -> Tensor:
        return self.images.batch(torch.as_tensor(indices))


class ImageDataModule(L.LightningDataModule):
    """Loaders of uint8 image batches (B, C, H, W) for one data set and a size schedule.

    Args:
        name: a data set name of ``get_dataset`` ("photos", "cifar10", "imagenet32", ...).
        root: its folder (see ``get_dataset``); for imagenet32/64 a parent holding ``imagenet32/``
            and ``imagenet64/`` serves both sizes.
        batch_size: training images per step.
        num_workers: DataLoader worker processes.
        seed: fixes the training order, the augmentation and the val hold-out.
        val_fraction: share of the training split held out for validation (0: no val loader).
        augment_flip: random horizontal flips of training batches.
        augment_crop: random-crop padding in pixels for training batches (0: off).
        schedule: stages ``(image_size, steps)`` / ``Stage`` / dicts; None: one stage at the data
            set's default size. imagenet32/imagenet64 switch between the two sets by stage size;
            photos/folder cut or resize at the stage size; cifar10/fashion-mnist allow only
            their native size.
        eval_batch_size: batch size of the val/test loaders (default ``batch_size``).
        max_val_images: use a seeded random subset of at most this many val images.
        device_cache_mb: on a CUDA trainer, keep the uint8 training sets on the GPU when they
            take at most this many MiB together, and gather and augment each step's batch
            there (the loader then yields ``BatchDraw``s: indices and random draws). Larger
            sets, 0, or a CPU: batches are built on the CPU, pinned and copied without
            blocking. Either way the batches are the same, image for image.
    """

    name: str  # the data set's (LightningDataModule's own is optional)

    def __init__(
        self,
        name: str,
        root: str | os.PathLike | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.05,
        augment_flip: bool = False,
        augment_crop: int = 0,
        schedule: Sequence[StageLike] | None = None,
        eval_batch_size: int | None = None,
        max_val_images: int | None = None,
        device_cache_mb: int = 4096,
    ) -> None:
        super().__init__()
        info = dataset_info(name)
        for arg, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size or 1),
            ("max_val_images", max_val_images or 1),
        ):
            if value < 1:
                raise DataError(f"{arg} must be >= 1; got {value}")
        if num_workers < 0 or seed < 0 or augment_crop < 0 or device_cache_mb < 0:
            raise DataError(
                "num_workers, seed, augment_crop and device_cache_mb must be >= 0; "
                f"got {num_workers}, {seed}, {augment_crop}, {device_cache_mb}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must be in [0, 1); got {val_fraction}")
        self.name, self.root = name, root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.val_fraction = num_workers, seed, val_fraction
        self.augment_flip, self.augment_crop = augment_flip, augment_crop
        self.max_val_images, self.device_cache_mb = max_val_images, device_cache_mb
        self.stages: tuple[Stage, ...] = parse_schedule(schedule, info.default_size)
        for stage in self.stages:
            self.source(stage.image_size)  # reject sizes the data set does not have, before any reading
            if augment_crop >= stage.image_size:
                raise DataError(
                    f"augment_crop must be below the image size; got {augment_crop} for "
                    f"{stage.image_size}x{stage.image_size} images"
                )
        self.start_step = 0
        self._sets: dict[tuple[str, int], ImageSet] = {}
        self._device_images: dict[tuple[int, torch.device], Tensor] = {}  # (stage, device) -> (N, C, H, W)
        self.save_hyperparameters(ignore=["schedule"])
        self.hparams["schedule"] = [dataclasses.asdict(s) for s in self.stages]

    # --- facts the trainer needs ----------------------------------------------------------
    @property
    def num_channels(self) -> int:
        """C of every batch: 3, or 1 for Fashion-MNIST."""
        return dataset_info(self.name).channels

    @property
    def total_steps(self) -> int | None:
        """The schedule's total number of steps, or None when the last stage is open-ended."""
        steps = [s.steps for s in self.stages]
        return None if None in steps else sum(steps)  # type: ignore[arg-type]

    def stage_at(self, step: int) -> Stage:
        """The stage that global ``step`` trains in."""
        return self.stages[stage_index(self.stages, step)[0]]

    # --- data sets --------------------------------------------------------------------------
    def source(self, image_size: int) -> tuple[str, int | None]:
        """``(data set name, image_size argument)`` that provides images of ``image_size``."""
        if self.name in ("imagenet32", "imagenet64"):
            if image_size not in (32, 64):
                raise DataError(f"downsampled ImageNet comes in 32 and 64; a stage asked for {image_size}")
            return f"imagenet{image_size}", None
        check_image_size(self.name, image_size)
        return self.name, image_size

    def dataset(self, split: str, image_size: int | None = None) -> ImageSet:
        """The ``split`` set at ``image_size`` (default: the last stage's), loaded once."""
        size = self.stages[-1].image_size if image_size is None else image_size
        if (split, size) not in self._sets:
            name, size_arg = self.source(size)
            self._sets[(split, size)] = get_dataset(
                name, split, root=self.root, image_size=size_arg, val_fraction=self.val_fraction, seed=self.seed
            )
        return self._sets[(split, size)]

    def prepare_data(self) -> None:
        """Build the caches (photos patches, ImageNet arrays) once, before any worker starts."""
        for size in {s.image_size for s in self.stages}:
            self.dataset("train", size)
        self.dataset("test")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            for s in self.stages:
                self.dataset("train", s.image_size)
        if stage in (None, "fit", "validate") and self.val_fraction > 0:
            self.dataset("val")
        if stage in (None, "test"):
            self.dataset("test")

    # --- loaders ------------------------------------------------------------------------------
    def _start_step(self) -> int:
        trainer = self.trainer
        if trainer is None:
            return self.start_step
        return int(trainer.global_step) * int(getattr(trainer, "accumulate_grad_batches", 1))

    def train_dataloader(self, on_device: bool | None = None) -> DataLoader:
        """Infinite loader of training batches uint8 (B, C, H, W), from the current step on.

        With ``on_device`` (None: on a CUDA trainer when the training sets fit
        ``device_cache_mb``) it yields each step's ``BatchDraw`` instead, and
        ``on_after_batch_transfer`` reads its pixels on the device the draw was moved to.
        """
        sets = [self.dataset("train", s.image_size) for s in self.stages]
        rank, world = self._rank_and_world()
        sampler = StagedBatchSampler(
            self.stages,
            [len(x) for x in sets],
            self.batch_size,
            self.seed,
            start_step=self._start_step(),
            rank=rank,
            world_size=world,
        )
        if on_device is None:
            on_device = self._fits_on_device(sets)
        batches = StagedBatches(
            sets,
            seed=self.seed,
            flip=self.augment_flip,
            crop_padding=self.augment_crop,
            rank=rank,
            draws_only=on_device,
        )
        # pinned host memory: Lightning's copy to a GPU is then asynchronous (non_blocking)
        return DataLoader(
            batches,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            generator=self._generator(),
        )

    def _fits_on_device(self, sets: Sequence[ImageSet]) -> bool:
        trainer = self.trainer
        if trainer is None or trainer.strategy.root_device.type != "cuda":
            return False
        nbytes = sum(len(x) * x[0].numel() for x in sets)
        fits = nbytes <= self.device_cache_mb * 2**20
        log.info(
            "training batches are %s (%d MiB of uint8 training images, data.device_cache_mb=%d)",
            "gathered on the GPU" if fits else "built on the CPU and copied",
            nbytes // 2**20,
            self.device_cache_mb,
        )
        return fits

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """A ``BatchDraw`` (``train_dataloader(on_device=True)``) becomes its uint8 batch on the
        device it was moved to; the stage's training images are copied there once."""
        if not isinstance(batch, BatchDraw):
            return batch
        device = batch.indices.device
        key = (batch.stage, device)
        if key not in self._device_images:
            images = self.dataset("train", self.stages[batch.stage].image_size)
            # a fresh copy of the rows (not ImageSet.images, which would keep one on the CPU)
            self._device_images[key] = images.batch(torch.arange(len(images))).to(device)
        return pixels(self._device_images[key], batch)

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _generator(self) -> torch.Generator:
        """A loader's own generator: creating an iterator then never draws from the global RNG
        (which the quantizers' code re-initialisation uses), so resuming stays exact."""
        return torch.Generator().manual_seed(self.seed)

    def _eval_loader(self, images: ImageSet) -> DataLoader:
        sampler = BatchSampler(SequentialSampler(range(len(images))), self.eval_batch_size, drop_last=False)
        return DataLoader(
            _Batches(images),
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            generator=self._generator(),
        )

    def val_dataloader(self, image_size: int | None = None) -> DataLoader | list:
        """The val split (at the last stage's size by default), capped at ``max_val_images``.

        With ``val_fraction=0`` there is no val split: an empty list, which Lightning reads as
        "no validation".
        """
        if self.val_fraction == 0.0:
            log.info("no val split (val_fraction=0): validation is skipped")
            return []
        val = self.dataset("val", image_size)
        if self.max_val_images is not None and len(val) > self.max_val_images:
            generator = torch.Generator().manual_seed(self.seed)
            val = val.subset(torch.randperm(len(val), generator=generator)[: self.max_val_images].sort().values)
        return self._eval_loader(val)

    def test_dataloader(self, image_size: int | None = None) -> DataLoader:
        """The test split (at the last stage's size by default), in file order."""
        return self._eval_loader(self.dataset("test", image_size))
