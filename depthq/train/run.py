"""One training run: data module, Lightning trainer, run directory. ``train()`` is ``depthq train``.

Run directory (``--run-dir``)::

    config.yaml              the resolved RunConfig (written once the data has been read)
    metrics.csv              every logged metric (CSVLogger); tensorboard/ has the same
    validation.jsonl         each validation's EvalResult, one JSON object per line
    grids/step_*.png         originals above reconstructions, at each validation
    checkpoints/last.ckpt    Lightning checkpoint for --resume (atomic, checksummed, weights_only)
    checkpoints/best.ckpt    the same at the best validation
    model.safetensors        latest weights + config.json: depthq.load(run_dir); model.json sidecar
    best.safetensors         weights of the best validation (total bits/dim, or MSE); best.json
    summary.json             the TrainSummary: steps, time, parameters, last validation

Everything after config.yaml is written by one callback, ``RunArtifacts``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from depthq.atomic import write_text
from depthq.config import RunConfig, dump_config, saved_run_config
from depthq.errors import ConfigError, CorruptFileError, DepthqError, MissingFileError, RunDirError
from depthq.runtime import (
    AppendingCSVLogger,
    RNGState,
    SafeCheckpointIO,
    StepProgress,
    TrainerPrecision,
    checkpoint_step,
    cpu_has_native_bf16,
    is_main_process,
    read_checkpoint,
    resolve_accelerator,
    trim_history,
    verify_checkpoint,
)
from depthq.runtime import resolve_precision as runtime_precision
from depthq.terminal import QUIET_WARNINGS
from depthq.train.callbacks import RunArtifacts
from depthq.train.module import DQModule
from depthq.train.summary import TrainSummary

log = logging.getLogger(__name__)

CHECKPOINTS = Path("checkpoints")
#: what --resume may change: extending the run, a guard against bad updates, and things that
#: do not change what is trained (progress display, where the data lives, loader workers, how
#: the step is computed: compilation, the search backend, batches built on the device)
RESUMABLE_CHANGES = (
    "train.steps",
    "train.skip_grad_norm",
    "train.progress",
    "data.root",
    "data.num_workers",
    "train.compile",
    "model.search",
    "data.device_cache_mb",
)
SECTION_WORDS = {"model": "the model", "data": "the data", "train": "the training", "recipe": "the recipe"}


def resolve_precision(config: RunConfig, accelerator: str) -> tuple[TrainerPrecision, bool]:
    """(Lightning precision, channels_last) of the autoencoder's training after resolving "auto".

    Measured on a 2-core AMX CPU (benchmarks/model.py): bf16 autocast with channels_last is
    about 5x faster than fp32 for the convolutions, and fp32 channels_last is slower than
    fp32 NCHW, so bf16 is used on CPUs that compute it natively, and channels_last follows
    mixed precision unless set explicitly.
    """
    precision = runtime_precision(config.train.precision, accelerator, cpu_bf16=cpu_has_native_bf16())
    channels_last = config.train.channels_last
    if channels_last is None:
        channels_last = precision != "32"
    return precision, channels_last


def config_changes(old: RunConfig, new: RunConfig) -> list[tuple[str, object, object]]:
    """(section.key, old value, new value) of every field that differs (``recipe`` for the recipe)."""
    a, b = old.to_dict(), new.to_dict()
    changes: list[tuple[str, object, object]] = []
    for section, values in a.items():
        if not isinstance(values, dict):
            if values != b[section]:
                changes.append((section, values, b[section]))
            continue
        changes += [
            (f"{section}.{key}", values[key], b[section][key]) for key in values if values[key] != b[section][key]
        ]
    return changes


def check_resume(saved: RunConfig, new: RunConfig, step: int) -> None:
    """ConfigError unless ``new`` only extends ``saved`` (see ``RESUMABLE_CHANGES``)."""
    refused = [c for c in config_changes(saved, new) if c[0] not in RESUMABLE_CHANGES]
    if refused:
        section = refused[0][0].split(".")[0]
        raise ConfigError(
            f"--resume cannot change {SECTION_WORDS[section]}: "
            + ", ".join(f"{key} was {old!r}, now {value!r}" for key, old, value in refused)
            + " (on resume only --steps, to extend the run, train.skip_grad_norm, --root and "
            "data.num_workers may change; start a new run for other settings)"
        )
    if new.train.steps < step:
        raise ConfigError(
            f"the checkpoint is at step {step}: train.steps={new.train.steps} would end "
            "before it (--steps can only extend a resumed run)"
        )
    if new.train.steps != saved.train.steps and saved.train.lr_schedule == "cosine":
        # the schedule is a function of train.steps: stretching it would raise the learning rate
        # at once (e.g. from 5% to 56% of lr when 800 steps become 1,600)
        raise ConfigError(
            f"--resume cannot extend a run with the cosine learning-rate schedule (train.steps was "
            f"{saved.train.steps}, now {new.train.steps}): its rate has decayed to the end, and a longer "
            "schedule would raise it again at once. Resume with the same steps, or start a new run "
            "(lr_schedule: constant runs can be extended)"
        )


def _load_resume_point(run_dir: Path, which: str) -> tuple[int, RunConfig]:
    """The step and saved config of ``checkpoints/<which>.ckpt``, with a clear error if unusable."""
    checkpoint = run_dir / CHECKPOINTS / f"{which}.ckpt"
    try:
        state = read_checkpoint(checkpoint, mmap=True)
    except (MissingFileError, CorruptFileError) as err:
        hint = ""
        best = run_dir / CHECKPOINTS / "best.ckpt"
        if which == "last" and best.is_file():
            try:
                verify_checkpoint(best)
                hint = f"; {best} (step {checkpoint_step(best)}) is intact: continue from it with --resume best"
            except DepthqError:
                pass
        elif isinstance(err, MissingFileError):
            hint = " (was the run started with this --run-dir, and did it reach its first checkpoint?)"
        raise type(err)(f"cannot resume: {err}{hint}") from err
    saved = saved_run_config(state["hyper_parameters"]["config"], origin=str(checkpoint))
    return int(state["global_step"]), saved


def _finished(run_dir: Path, step: int) -> TrainSummary | None:
    """The run's summary if it already finished at ``step`` (resuming it has nothing to do)."""
    try:
        summary = TrainSummary.read(run_dir)
    except DepthqError:  # missing, or written by an older depthq: finish it again
        return None
    return summary if summary.steps == step else None


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool | str = False,
    callbacks: Sequence[L.Callback] = (),
    description: str = "training",
) -> TrainSummary:
    """Train a model as configured; returns the summary written to ``summary.json``.

    Args:
        resume: False for a new run; True or "last" to continue ``run_dir`` from
            ``checkpoints/last.ckpt``, "best" from ``checkpoints/best.ckpt``. A resumed run
            keeps its config; only the changes in ``RESUMABLE_CHANGES`` are accepted.
    """
    run_dir = Path(run_dir)
    which = "last" if resume is True else (resume or None)
    if which not in (None, "last", "best"):
        raise ConfigError(f"resume must be False, True, 'last' or 'best', got {resume!r}")
    dm = config.datamodule()  # checks the config against the model before anything is read
    main = is_main_process()
    if which and not main:  # every process of a finished run returns, so none waits for the others
        step = checkpoint_step(run_dir / CHECKPOINTS / f"{which}.ckpt")
        summary = _finished(run_dir, step) if step == config.train.steps else None
        if summary is not None:
            return summary
    if main:
        step, saved = 0, config
        if which:
            step, saved = _load_resume_point(run_dir, which)
            check_resume(saved, config, step)
            summary = _finished(run_dir, step) if step == config.train.steps else None
            if summary is not None:
                log.info(
                    "%s already finished at step %d: nothing to do (pass --steps N > %d to train further)",
                    run_dir,
                    step,
                    step,
                )
                return summary
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirError(
                f"run directory {run_dir} already exists and is not empty: "
                "pass --resume to continue it, or choose another --run-dir"
            )
        dm.prepare_data()  # read the data before writing anything: a data error leaves no trace
        run_dir.mkdir(parents=True, exist_ok=True)
        if not which or config_changes(saved, config):  # a resume rewrites it only when extended
            write_text(run_dir / "config.yaml", dump_config(config))
        if which:
            trim_history(run_dir, step)  # rows logged after the checkpoint will be logged again
    t = config.train
    L.seed_everything(t.seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(config.train.accelerator)
    precision, channels_last = resolve_precision(config, accelerator)
    module = DQModule(config)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    parameters = module.model.num_parameters()
    artifacts = RunArtifacts(run_dir, config, precision=precision, channels_last=channels_last, parameters=parameters)
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
        logger=[
            AppendingCSVLogger(run_dir),
            TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=[
            RNGState(),
            artifacts,
            *([StepProgress(description, t.log_every)] if t.progress else []),
            *callbacks,
        ],
        plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=t.log_every,
        default_root_dir=run_dir,
    )
    if main:
        log.info(
            "training %s (%s parameters) on %s, precision %s%s -> %s",
            config.model.quantizer,
            f"{parameters:,}",
            accelerator,
            precision,
            ", channels_last" if channels_last else "",
            run_dir,
        )
    checkpoint = run_dir / CHECKPOINTS / f"{which}.ckpt" if which else None
    with warnings.catch_warnings():  # Python callers get the quiet terminal of the CLI too
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        trainer.fit(module, datamodule=dm, ckpt_path=checkpoint, weights_only=True)
    return artifacts.finish(trainer, module)
