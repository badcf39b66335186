"""One training run: data module, Lightning trainer, run directory. ``train()`` is ``depthq train``.

Run directory (``--run-dir``)::

    config.yaml              the resolved RunConfig
    metrics.csv              every logged metric (CSVLogger); tensorboard/ has the same
    validation.jsonl         each validation's labelled figures
    grids/step_*.png         originals above reconstructions, at each validation
    checkpoints/last.ckpt    Lightning checkpoint for --resume (atomic, weights_only loading)
    checkpoints/best.ckpt    the same at the best validation
    model.safetensors        latest weights + config.json: depthq.load(run_dir); model.json sidecar
    best.safetensors         weights of the best validation (total bits/dim, or MSE); best.json
    summary.json             final validation, timing, parameters, skipped steps
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from depthq.config import RunConfig, dump_config
from depthq.data import ImageDataModule
from depthq.atomic import write_json
from depthq.train.callbacks import (
    RNGState,
    RunArtifacts,
    SafeCheckpointIO,
    StepProgress,
)
from depthq.train.loggers import AppendingCSVLogger, trim_history
from depthq.train.module import DQModule

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.ckpt"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_accelerator(config: RunConfig) -> str:
    if config.train.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return config.train.accelerator


def resolve_precision(config: RunConfig, accelerator: str) -> tuple[str, bool]:
    """(Lightning precision, channels_last) after resolving "auto".

    Measured on a 2-core AMX CPU (benchmarks/model.py): bf16 autocast with channels_last is
    about 5x faster than fp32 for the convolutions, and fp32 channels_last is slower than
    fp32 NCHW, so channels_last follows mixed precision unless set explicitly.
    """
    precision = config.train.precision
    if precision == "auto":
        if accelerator == "gpu":
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            precision = "bf16-mixed" if cpu_has_native_bf16() else "32"
    channels_last = config.train.channels_last
    if channels_last is None:
        channels_last = precision != "32"
    return precision, channels_last


def make_datamodule(config: RunConfig) -> ImageDataModule:
    """The data module of a run, checked against the model."""
    d, m = config.data, config.model
    schedule = d.schedule or [{"image_size": m.image_size, "steps": config.train.steps}]
    total = sum(stage.get("steps") or 0 for stage in schedule)
    if d.schedule and total != config.train.steps:
        raise ValueError(f"data.schedule has {total} steps in all but train.steps is "
                         f"{config.train.steps}: make them equal")
    for i, stage in enumerate(schedule):
        try:
            m.check_image_size(stage["image_size"])
        except ValueError as err:
            raise ValueError(f"data.schedule[{i}]: {err}") from None
    dm = ImageDataModule(
        d.name, root=d.root, batch_size=d.batch_size, num_workers=d.num_workers,
        seed=config.train.seed, val_fraction=d.val_fraction, augment_flip=d.augment_flip,
        augment_crop=d.augment_crop, schedule=schedule, eval_batch_size=d.eval_batch_size,
        max_val_images=d.max_val_images,
    )
    if dm.num_channels != m.image_channels:
        raise ValueError(f"data {d.name!r} has {dm.num_channels} channel(s) but "
                         f"model.image_channels is {m.image_channels}")
    return dm


LAUNCH_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK",  # Lightning's launcher, torchrun
                         "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID")  # srun tasks


def _is_launcher() -> bool:
    """True in the process that owns the run directory: the single process, or rank 0 of
    node 0 of a DDP run started by Lightning's launcher, torchrun or SLURM's srun."""
    return all(os.environ.get(var, "0") == "0" for var in LAUNCH_RANK_VARIABLES)


def _check_resumable(checkpoint: Path, config: RunConfig) -> int:
    """The checkpoint's step; ValueError if the config's model differs from the checkpoint's."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    saved = (state.get("hyper_parameters") or {}).get("config", {}).get("model")
    wanted = config.to_dict()["model"]
    if saved is not None and saved != wanted:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(
            "--resume cannot change the model: "
            + ", ".join(f"model.{k} was {saved.get(k)!r}, now {wanted[k]!r}" for k in changed)
        )
    return int(state["global_step"])


def _prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> Path | None:
    """Create (or check, when resuming) the run directory; returns the checkpoint to resume."""
    if not _is_launcher():  # rank 0 prepared it before this worker was started
        return run_dir / CHECKPOINT if resume else None
    if resume:
        checkpoint = run_dir / CHECKPOINT
        if not checkpoint.is_file():
            raise FileNotFoundError(f"cannot resume: {checkpoint} not found (was the run started "
                                    f"with this --run-dir, and did it reach its first checkpoint?)")
        step = _check_resumable(checkpoint, config)  # before anything is written
        (run_dir / "config.yaml").write_text(dump_config(config))
        trim_history(run_dir, step)  # steps logged after the checkpoint will be trained again
        return checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {run_dir} already exists and is not empty: "
                              "pass --resume to continue it, or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    return None


def train(config: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          callbacks: Sequence[L.Callback] = (), description: str = "training") -> dict:
    """Train a model as configured; returns the summary written to ``summary.json``."""
    run_dir = Path(run_dir)
    dm = make_datamodule(config)  # validates the config before anything is written
    checkpoint = _prepare_run_dir(run_dir, config, resume)
    t = config.train
    L.seed_everything(t.seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(config)
    precision, channels_last = resolve_precision(config, accelerator)
    module = DQModule(config.to_dict())
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    parameters = module.model.num_parameters()
    metadata = {"run": config.to_dict(), "precision": precision, "channels_last": channels_last,
                "parameters": parameters}
    artifacts = RunArtifacts(run_dir, metadata)  # validation files, exports, best/last after validations
    trainer = L.Trainer(
        accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=precision, max_steps=t.steps, max_epochs=-1,
        val_check_interval=t.val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        logger=[AppendingCSVLogger(run_dir),
                TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False)],
        callbacks=[
            ModelCheckpoint(dirpath=run_dir / "checkpoints", every_n_train_steps=t.checkpoint_every,
                            save_top_k=0, save_last=True),
            RNGState(), artifacts,
            *([StepProgress(description)] if t.progress else []), *callbacks,
        ],
        plugins=[SafeCheckpointIO()], use_distributed_sampler=False,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=t.log_every,
        default_root_dir=run_dir,
    )
    log.info("training %s (%s parameters) on %s, precision %s%s -> %s", config.model.quantizer,
             f"{parameters:,}", accelerator, precision, ", channels_last" if channels_last else "",
             run_dir)
    start = time.perf_counter()
    with warnings.catch_warnings():
        if resume:  # a resumed run's checkpoint folder is expected to hold checkpoints
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=dm, ckpt_path=checkpoint, weights_only=True)
    seconds = time.perf_counter() - start
    last = module.last_validation
    if dm.val_fraction > 0 and (last is None or last["step"] != trainer.global_step):
        trainer.validate(module, datamodule=dm, verbose=False, weights_only=True)  # final figures
        if artifacts.final_improved:
            trainer.save_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    trainer.save_checkpoint(run_dir / CHECKPOINT, weights_only=False)  # the full state
    summary = {
        "run_dir": str(run_dir), "steps": int(trainer.global_step), "train_seconds": seconds,
        "parameters": parameters, "precision": precision, "channels_last": channels_last,
        "skipped_steps": int(module.skipped_steps), "validation": module.last_validation,
    }
    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
    return summary
