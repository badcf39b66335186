"""The schedule, the resumable sampler and ``ImageDataModule`` (standalone and under Lightning)."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch

from depthq.data import ImageDataModule, Stage, StagedBatchSampler, parse_schedule
from depthq.data.schedule import stage_index


def test_parse_schedule_accepts_pairs_dicts_and_stages_and_checks_them():
    stages = parse_schedule([(32, 10), {"image_size": 64, "steps": 5}, Stage(128)], 32)
    assert stages == (Stage(32, 10), Stage(64, 5), Stage(128, None))
    assert parse_schedule(None, 28) == (Stage(28, None),)
    with pytest.raises(ValueError, match="only the last stage may have steps=None"):
        parse_schedule([(32, None), (64, 5)], 32)
    with pytest.raises(ValueError, match="unknown schedule keys \\['size'\\]"):
        parse_schedule([{"size": 32}], 32)
    with pytest.raises(ValueError, match="Stage.steps must be a positive int"):
        Stage(32, 0)
    with pytest.raises(ValueError, match="schedule is empty"):
        parse_schedule([], 32)


def test_stage_boundaries():
    stages = (Stage(32, 3), Stage(64, 2))
    assert [stage_index(stages, s) for s in range(7)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]


def test_sampler_is_a_pure_function_of_seed_and_step():
    stages, sizes = (Stage(32, 7), Stage(64)), (50, 30)
    full = list(itertools.islice(StagedBatchSampler(stages, sizes, 8, seed=3), 20))
    resumed = list(itertools.islice(StagedBatchSampler(stages, sizes, 8, seed=3, start_step=12), 8))
    assert [(k.step, k.stage) for k in resumed] == [(k.step, k.stage) for k in full[12:]]
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(resumed, full[12:]))
    other = list(itertools.islice(StagedBatchSampler(stages, sizes, 8, seed=4), 20))
    assert not all(torch.equal(a.indices, b.indices) for a, b in zip(full, other))
    # one epoch of stage 0 = 50 // 8 = 6 disjoint full batches; the next epoch is a new permutation
    epoch = torch.cat([k.indices for k in full[:6]])
    assert len(epoch) == 48 and len(epoch.unique()) == 48 and epoch.max() < 50
    assert all(k.stage == 1 and k.indices.max() < 30 for k in full[7:])
    with pytest.raises(ValueError, match="has 30 images, fewer than batch_size=40"):
        StagedBatchSampler(stages, sizes, 40, seed=0)


def test_photos_module_switches_size_by_stage_and_resumes():
    dm = ImageDataModule("photos", batch_size=4, schedule=[(32, 2), (64, 2)], val_fraction=0.05, seed=1)
    batches = list(itertools.islice(dm.train_dataloader(), 5))
    assert [tuple(b.shape) for b in batches] == [(4, 3, 32, 32)] * 2 + [(4, 3, 64, 64)] * 3
    assert all(b.dtype == torch.uint8 for b in batches)
    assert dm.num_channels == 3 and dm.total_steps == 4 and dm.stage_at(3) == Stage(64, 2)
    dm.start_step = 3
    assert torch.equal(next(iter(dm.train_dataloader())), batches[3])
    # training batches never contain val images: the val patches are not in the train set at all
    val = dm.dataset("val", 32)
    train = dm.dataset("train", 32)
    assert len(val) > 0 and len(train) + len(val) < 68_505


def test_augmented_batches_are_seeded_by_step_and_workers_do_not_change_them():
    dm = ImageDataModule("photos", batch_size=8, augment_flip=True, augment_crop=4, seed=2)
    plain = ImageDataModule("photos", batch_size=8, seed=2)
    a = list(itertools.islice(dm.train_dataloader(), 3))
    b = list(itertools.islice(ImageDataModule("photos", batch_size=8, augment_flip=True, augment_crop=4, seed=2,
                                              num_workers=2).train_dataloader(), 3))
    c = list(itertools.islice(plain.train_dataloader(), 3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, y) for x, y in zip(a, c))


def test_eval_loaders_and_their_options():
    dm = ImageDataModule("photos", batch_size=8, eval_batch_size=100, max_val_images=150, val_fraction=0.1)
    val = list(dm.val_dataloader())
    assert [len(b) for b in val] == [100, 50] and val[0].dtype == torch.uint8
    test = list(dm.test_dataloader())
    assert sum(len(b) for b in test) == 602
    assert torch.equal(torch.cat(test), dm.dataset("test").images)  # file order, nothing dropped
    assert ImageDataModule("photos", val_fraction=0.0).val_dataloader() == []  # Lightning: no validation


def test_stage_sizes_are_checked_per_data_set(imagenet_root, cifar_root):
    with pytest.raises(ValueError, match="cifar10 images are 32x32; got image_size=64"):
        ImageDataModule("cifar10", root=cifar_root, schedule=[(32, 5), (64, 5)])
    with pytest.raises(ValueError, match="comes in 32 and 64"):
        ImageDataModule("imagenet32", root=imagenet_root, schedule=[(48, 5)])
    dm = ImageDataModule("imagenet32", root=imagenet_root, batch_size=4, schedule=[(32, 1), (64, 1)],
                         val_fraction=0.1)
    shapes = [tuple(b.shape) for b in itertools.islice(dm.train_dataloader(), 2)]
    assert shapes == [(4, 3, 32, 32), (4, 3, 64, 64)]
    assert torch.cat(list(dm.test_dataloader())).shape == (5, 3, 64, 64)  # imagenet64 val_data


class _Recorder(L.LightningModule):
    """A one-parameter model that records every training batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch.clone())
        return (batch.float().mean() / 255 - self.w) ** 2

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.seen_val = getattr(self, "seen_val", 0) + len(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, max_steps: int, **kwargs) -> L.Trainer:
    kwargs.setdefault("limit_val_batches", 0)
    return L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_a_resumed_lightning_run_sees_the_same_batches(tmp_path):
    make = lambda: ImageDataModule("photos", batch_size=4, schedule=[(32, 3), (64, 3)], seed=5, augment_flip=True)
    whole = _Recorder()
    _trainer(tmp_path / "a", 6).fit(whole, datamodule=make())
    first = _Recorder()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    _trainer(tmp_path / "b", 4, callbacks=[ckpt]).fit(first, datamodule=make())
    resumed = _Recorder()
    _trainer(tmp_path / "c", 6).fit(resumed, datamodule=make(), ckpt_path=str(next((tmp_path / "ckpt").glob("*.ckpt"))))
    assert len(whole.seen) == 6 and len(resumed.seen) == 2
    assert [b.shape[-1] for b in whole.seen] == [32, 32, 32, 64, 64, 64]
    assert all(torch.equal(a, b) for a, b in zip(first.seen, whole.seen[:4]))
    assert all(torch.equal(a, b) for a, b in zip(resumed.seen, whole.seen[4:]))


def test_lightning_validates_on_the_val_split_or_skips_it(tmp_path):
    model = _Recorder()
    dm = ImageDataModule("photos", batch_size=4, val_fraction=0.05, eval_batch_size=50, max_val_images=120)
    L.Trainer(max_steps=2, val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0,
              accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path).fit(model, datamodule=dm)
    assert model.seen_val == 120 and len(model.seen) == 2
    model = _Recorder()
    trainer = _trainer(tmp_path, 2, limit_val_batches=1.0, val_check_interval=1, check_val_every_n_epoch=None)
    trainer.fit(model, datamodule=ImageDataModule("photos", val_fraction=0.0))
    assert not hasattr(model, "seen_val") and len(model.seen) == 2


def test_distributed_ranks_take_disjoint_slices_of_one_global_batch():
    from depthq.data import Stage, StagedBatchSampler

    stages = [Stage(32, 50)]
    single = StagedBatchSampler(stages, [100], batch_size=8, seed=3)
    ranks = [StagedBatchSampler(stages, [100], batch_size=4, seed=3, rank=r, world_size=2)
             for r in range(2)]
    for step in (0, 7, 12, 13):  # 12 full global batches per epoch: step 12 starts epoch 1
        parts = [s.batch_at(step).indices for s in ranks]
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
        assert sorted(torch.cat(parts).tolist()) == sorted(single.batch_at(step).indices.tolist())
    with pytest.raises(ValueError, match="rank must be in"):
        StagedBatchSampler(stages, [100], batch_size=4, seed=3, rank=2, world_size=2)


def test_augmentation_differs_between_ranks_of_one_step():
    from depthq.data.imageset import ImageSet
    from depthq.data.module import StagedBatches
    from depthq.data.schedule import BatchKey

    images = torch.arange(64 * 3 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).view(64, 3, 4, 4)
    sets = [ImageSet(images=images, name="toy", split="train")]
    key = BatchKey(step=5, stage=0, indices=torch.arange(64))
    draws = [StagedBatches(sets, seed=0, flip=True, crop_padding=0, rank=r)[key] for r in (0, 1)]
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], StagedBatches(sets, seed=0, flip=True, crop_padding=0, rank=0)[key])


def _definition_of_the_batch(dm: ImageDataModule, step: int) -> torch.Tensor:
    """A training batch as the module docstring defines it: the sampler's rows of the stage's set,
    augmented with a generator seeded by (seed, step, rank 0)."""
    from depthq.data.augment import augment
    from depthq.data.module import _AUGMENT_SALT
    from depthq.data.schedule import mix_seed

    sets = [dm.dataset("train", s.image_size) for s in dm.stages]
    key = StagedBatchSampler(dm.stages, [len(x) for x in sets], dm.batch_size, dm.seed).batch_at(step)
    generator = torch.Generator().manual_seed(mix_seed(dm.seed, step, 0, _AUGMENT_SALT))
    return augment(sets[key.stage].batch(key.indices), flip=dm.augment_flip, crop_padding=dm.augment_crop,
                   generator=generator)


@pytest.mark.parametrize("flip, crop", [(False, 0), (True, 3)])
def test_batches_gathered_on_the_device_equal_the_cpu_batches(flip, crop):
    from depthq.data.module import BatchDraw

    dm = ImageDataModule("photos", batch_size=8, augment_flip=flip, augment_crop=crop, seed=5,
                         schedule=[(32, 2), (64, 2)])
    assert dm.device_cache_mb > 0
    cpu = list(itertools.islice(dm.train_dataloader(), 5))
    assert all(torch.equal(b, _definition_of_the_batch(dm, step)) for step, b in enumerate(cpu))
    if flip or crop:  # the definition really augments
        plain = ImageDataModule("photos", batch_size=8, seed=5, schedule=[(32, 2), (64, 2)])
        assert not torch.equal(cpu[0], next(iter(plain.train_dataloader())))
    # the device path: the loader yields draws, the pixels are read where the images are (here
    # the CPU standing in for a GPU: the same code, every tensor on one device)
    draws = list(itertools.islice(dm.train_dataloader(on_device=True), 5))
    assert all(isinstance(d, BatchDraw) for d in draws)
    assert (draws[0].augmentation is None) == (not flip and not crop)
    for draw, expected in zip(draws, cpu):
        batch = dm.on_after_batch_transfer(draw, 0)
        assert batch.dtype == torch.uint8 and torch.equal(batch, expected)
    assert len(dm._device_images) == 2  # each stage's training images copied once
    plain_batch = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    assert dm.on_after_batch_transfer(plain_batch, 0) is plain_batch  # val/test batches pass through


def test_a_crop_as_large_as_the_image_is_refused_up_front():
    with pytest.raises(ValueError, match="augment_crop must be below the image size"):
        ImageDataModule("photos", batch_size=8, augment_crop=32)
