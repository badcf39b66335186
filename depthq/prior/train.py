"""Training a prior on Lightning, with the conventions of ``depthq train``.

``train_prior(model, config, digest=..., data=..., out=..., source=...)`` encodes the autoencoder
run's training and validation images once (cached, see ``depthq.prior.data``), then fits a
``PriorModel`` by maximum likelihood. The prior's folder
(default ``RUN_DIR/prior/``)::

    config.yaml             the resolved PriorRunConfig (prior: and train: sections)
    metrics.csv             every logged metric (train loss in nats per code, val bits per image)
    checkpoints/last.ckpt   Lightning checkpoint for --resume (atomic, read with weights_only=True)
    prior.safetensors       latest weights + prior.json (layout, config, digests, validation, and
                            the training codes' counts: the empirical prior to compare with)
    summary.json            the final validation: learned, empirical and uniform rates

Data order, initialisation and dropout are fixed by ``train.seed``; a resumed run continues
the exact batch sequence. Under DDP every rank takes its slice of each global batch, every rank
validates on the whole val split (so all agree), and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from depthq.atomic import write_json
from depthq.data.schedule import BatchKey, Stage, StagedBatchSampler
from depthq.errors import CorruptFileError, MissingFileError, RunDirError, UsageError
from depthq.evaluate.bits import EmpiricalPrior, uniform_rate_bits
from depthq.models import HierarchicalAutoencoder
from depthq.prior.config import PriorRunConfig, dump_prior_config
from depthq.prior.data import RunData, cached_codes
from depthq.prior.io import save_prior
from depthq.prior.layout import CodeLayout
from depthq.prior.model import LN2, PriorModel
from depthq.prior.rates import code_counts
from depthq.runtime import (
    AppendingCSVLogger,
    RNGState,
    SafeCheckpointIO,
    StepProgress,
    is_main_process,
    lr_factor,
    read_checkpoint,
    resolve_accelerator,
    resolve_precision,
    trim_history,
)

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.ckpt"


class PriorModule(L.LightningModule):
    """Maximum likelihood on code sequences; validation reports bits per image and bits/dim."""

    def __init__(self, config: dict, layout: dict, dims: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config = PriorRunConfig.from_dict(config)
        self.prior = PriorModel(CodeLayout.from_dict(layout), self.run_config.prior)
        self.dims = dims
        self.last_validation: dict | None = None
        self._val_sum: torch.Tensor | None = None  # set at the start of each validation
        self._val_count = 0
        self._seconds_before, self._session_start = 0.0, time.perf_counter()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        nll = self.prior(batch.long())  # (B,) nats per image
        loss = nll.mean() / (self.prior.steps * self.prior.width)  # nats per code
        self.log_dict(
            {
                "train/loss": loss,
                "train/bits_per_image": nll.mean().detach() / LN2,
                "train/lr": torch.tensor(self._optimizer().param_groups[0]["lr"]),
            },
            on_step=True,
            on_epoch=False,
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = 0

    def _optimizer(self) -> LightningOptimizer:
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            raise RuntimeError(f"the prior trains with one optimizer, got {len(optimizer)}")
        return optimizer

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        if self._val_sum is None:
            raise RuntimeError("validation_step before on_validation_epoch_start")
        with torch.autocast(self.device.type, enabled=False):  # the figure is reported in fp32
            self._val_sum += self.prior(batch.long()).double().sum()
        self._val_count += len(batch)

    def on_validation_epoch_end(self) -> None:
        if not self._val_count or self._val_sum is None:
            return
        bits = self._val_sum / self._val_count / LN2  # every rank saw the whole split: they agree
        self.log_dict(
            {"val/bits_per_image": bits.float(), "val/bits_per_dim": (bits / self.dims).float()},
            on_epoch=True,
            sync_dist=True,
        )
        self.last_validation = {
            "step": int(self.global_step),
            "images": self._val_count,
            "bits_per_image": float(bits),
            "bits_per_dim": float(bits) / self.dims,
        }

    def on_fit_start(self) -> None:
        self._session_start = time.perf_counter()

    def validation_postfix(self) -> dict[str, str]:
        """The last validation's code rate for the progress bar."""
        val = self.last_validation
        return {} if val is None else {"val bits/dim": f"{val['bits_per_dim']:.4f}"}

    @property
    def train_seconds(self) -> float:
        """Training time of this run, earlier sessions of a resumed run included."""
        return self._seconds_before + time.perf_counter() - self._session_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["prior_last_validation"] = self.last_validation
        checkpoint["prior_train_seconds"] = self.train_seconds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # a resumed run that has no steps left does not validate (and log) the same step again
        self.last_validation = checkpoint.get("prior_last_validation")
        self._seconds_before = float(checkpoint.get("prior_train_seconds", 0.0))

    def configure_optimizers(self):
        t = self.run_config.train
        decay = [p for n, p in self.prior.named_parameters() if p.dim() >= 2 and "emb" not in n]
        rest = [p for n, p in self.prior.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=t.lr,
            betas=(0.9, 0.95),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(
                step, warmup_steps=t.warmup_steps, total_steps=t.steps + 1, schedule="cosine", min_ratio=0.1
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _Batches(Dataset):
    """Code sequences (N, T, M) uint16 indexed by a ``BatchKey`` or a list of rows."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key) -> torch.Tensor:
        rows = key.indices.numpy() if isinstance(key, BatchKey) else np.asarray(key)
        return torch.from_numpy(self.codes[rows].astype(np.int64))


class CodeDataModule(L.LightningDataModule):
    """Training batches in a seeded, resumable order (``StagedBatchSampler``); the val split in order."""

    def __init__(
        self, train: np.ndarray, val: np.ndarray, *, batch_size: int, eval_batch_size: int, seed: int, image_size: int
    ) -> None:
        super().__init__()
        self.train_codes, self.val_codes = train, val
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.stage = Stage(image_size)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (int(trainer.global_rank), int(trainer.world_size)) if trainer else (0, 1)
        start = int(trainer.global_step) if trainer else 0
        sampler = StagedBatchSampler(
            [self.stage],
            [len(self.train_codes)],
            self.batch_size,
            self.seed,
            start_step=start,
            rank=rank,
            world_size=world,
        )
        return DataLoader(_Batches(self.train_codes), batch_size=None, sampler=sampler, generator=self._generator())

    def val_dataloader(self) -> DataLoader:
        sampler = BatchSampler(SequentialSampler(range(len(self.val_codes))), self.eval_batch_size, drop_last=False)
        return DataLoader(_Batches(self.val_codes), batch_size=None, sampler=sampler, generator=self._generator())

    def _generator(self) -> torch.Generator:
        """A loader's own generator: starting an iterator then draws nothing from the global RNG
        (which dropout uses), so a resumed run continues exactly."""
        return torch.Generator().manual_seed(self.seed)


class PriorArtifacts(L.Callback):
    """The one writer of the prior's checkpoint and exports.

    ``checkpoints/last.ckpt`` every ``checkpoint_every`` steps and after each validation (a
    collective: every rank calls, rank 0 writes); ``prior.safetensors`` + ``prior.json`` after each
    validation and at the end (rank 0).
    """

    def __init__(self, folder: Path, checkpoint_every: int, val_every: int, export) -> None:
        self.folder, self.every, self.val_every, self.export = folder, checkpoint_every, val_every, export

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 and step % self.val_every and step < trainer.max_steps:
            trainer.save_checkpoint(self.folder / CHECKPOINT, weights_only=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            self.export(pl_module)
        if trainer.state.fn == "fit":
            trainer.save_checkpoint(self.folder / CHECKPOINT, weights_only=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.export(pl_module)


def _prepare_folder(folder: Path, config: PriorRunConfig, resume: bool) -> Path | None:
    """Create the prior's folder (or check it, resuming); the checkpoint to resume from."""
    if resume:
        checkpoint = folder / CHECKPOINT
        if not checkpoint.is_file():
            raise MissingFileError(
                f"cannot resume: {checkpoint} not found (did the prior's training reach its first checkpoint?)"
            )
        state = read_checkpoint(checkpoint, mmap=True)  # verified: one line for a damaged file
        saved = (state.get("hyper_parameters") or {}).get("config")
        if not isinstance(saved, dict) or "global_step" not in state:
            raise CorruptFileError(f"cannot resume: {checkpoint} is not a checkpoint of a prior's training")
        if saved.get("prior") != config.prior.to_dict():
            raise UsageError("--resume cannot change the prior's architecture (prior.* settings)")
        trim_history(folder, int(state["global_step"]))  # steps after the checkpoint are trained again
        (folder / "config.yaml").write_text(dump_prior_config(config))
        return checkpoint
    if (folder / "config.yaml").exists() or (folder / CHECKPOINT).exists():
        raise RunDirError(f"{folder} already holds a prior: pass --resume to continue it, or --out another folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(dump_prior_config(config))
    return None


def prior_device(config: PriorRunConfig) -> str:
    """The device a prior trains on ("cuda" or "cpu"): where to put the autoencoder first."""
    return "cuda" if resolve_accelerator(config.train.accelerator) == "gpu" else "cpu"


def train_prior(
    model: HierarchicalAutoencoder,
    config: PriorRunConfig,
    *,
    digest: str,
    data: RunData,
    out: str | os.PathLike,
    source: str | os.PathLike,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> dict:
    """Train a prior over the codes of ``model``; returns ``summary.json``'s content.

    Args:
        model: the trained autoencoder, on ``prior_device(config)``; ``digest`` its ``state_digest``.
        config: the prior's architecture and training.
        data: the autoencoder run's data (``RunData.of_config``): the codes of its training split
            are the prior's training data, its val split the prior's validation.
        out: the prior's folder (``RUN_DIR/prior`` by convention).
        source: the autoencoder's weights file, recorded in the prior's files (not read here).
        resume: continue from ``out/checkpoints/last.ckpt``. The learning-rate schedule follows
            ``train.steps``: a run resumed with the same steps continues exactly as if it had not
            stopped; extending the steps recomputes the cosine over the new total, so the rate
            jumps up at the resumed step (e.g. from 0.10 to 0.57 of lr when 1,500 steps become
            3,000) and decays again to a tenth at the new end.
        callbacks: extra Lightning callbacks.
    """
    folder = Path(out)
    t = config.train
    accelerator = resolve_accelerator(t.accelerator)
    if not model.head.has_likelihood:
        log.warning("the model's head (%s) has no likelihood: the prior still models its codes", model.head.name)
    layout = CodeLayout.of(model.config, data.image_size)
    if is_main_process():
        checkpoint = _prepare_folder(folder, config, resume)
    else:
        checkpoint = folder / CHECKPOINT if resume else None
    batch_size, progress = t.eval_batch_size, t.progress
    train_codes = cached_codes(
        model, digest, data, "train", layout, max_images=t.max_train_images, batch_size=batch_size, progress=progress
    )
    val_codes = cached_codes(
        model, digest, data, "val", layout, max_images=t.max_val_images, batch_size=batch_size, progress=progress
    )
    dims = data.image_channels * data.image_size**2

    L.seed_everything(t.seed, workers=True, verbose=False)
    module = PriorModule(config.to_dict(), layout.to_dict(), dims)
    # measured: bf16 autocast slows the prior's small matmuls on CPU, AMX or not
    precision = resolve_precision(t.precision, accelerator, cpu_bf16=False)
    counts = code_counts(torch.from_numpy(train_codes.astype(np.int64)), layout)  # per level (M, K)
    data_meta = {
        "data": data.name,
        "split": "train",
        "train_images": len(train_codes),
        "val_images": len(val_codes),
        "autoencoder_weights": str(source),
        "empirical_counts": [c.tolist() for c in counts],
    }

    def export(pl_module: PriorModule) -> None:
        save_prior(
            pl_module.prior,
            folder,
            image_size=data.image_size,
            image_channels=data.image_channels,
            autoencoder_digest=digest,
            metadata={**data_meta, "step": int(pl_module.global_step), "validation": pl_module.last_validation},
        )

    dm = CodeDataModule(
        train_codes,
        val_codes,
        batch_size=t.batch_size,
        eval_batch_size=t.eval_batch_size,
        seed=t.seed,
        image_size=data.image_size,
    )
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=precision,
        max_steps=t.steps,
        max_epochs=-1,
        val_check_interval=t.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=t.grad_clip or None,
        logger=AppendingCSVLogger(folder),
        callbacks=[
            RNGState(),
            PriorArtifacts(folder, t.checkpoint_every, t.val_every, export),
            *([StepProgress("training the prior")] if t.progress else []),
            *callbacks,
        ],
        plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_checkpointing=False,  # PriorArtifacts is the one writer of checkpoints
        enable_model_summary=False,
        log_every_n_steps=t.log_every,
        default_root_dir=folder,
    )
    log.info(
        "training a %s prior (%s parameters) on %d code sequences of %s, %s, precision %s -> %s",
        config.prior.order,
        f"{module.prior.num_parameters():,}",
        len(train_codes),
        source,
        accelerator,
        precision,
        folder,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        trainer.fit(module, datamodule=dm, ckpt_path=checkpoint, weights_only=True)
        if module.last_validation is None or module.last_validation["step"] != trainer.global_step:
            trainer.validate(module, datamodule=dm, verbose=False, weights_only=True)
    seconds = module.train_seconds
    trainer.save_checkpoint(folder / CHECKPOINT, weights_only=False)
    val_rows = layout.from_sequence(torch.from_numpy(val_codes.astype(np.int64)))
    empirical = float(EmpiricalPrior.fit(counts).rate_bits(val_rows).mean())
    summary = {
        "prior_dir": str(folder),
        "run_dir": str(Path(source).parent),
        "order": config.prior.order,
        "steps": int(trainer.global_step),
        "train_seconds": seconds,
        "precision": precision,
        "parameters": module.prior.num_parameters(),
        "dims": dims,
        **data_meta,
        "validation": module.last_validation,
        "empirical_bits_per_image": empirical,
        "uniform_bits_per_image": uniform_rate_bits(layout.level_shapes),
        "empirical_prior": f"code frequencies of the {len(train_codes):,} training images, add-one smoothed",
    }
    if trainer.is_global_zero:
        write_json(folder / "summary.json", summary)
    return summary
