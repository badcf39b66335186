"""The runtime both training loops share (the autoencoder's ``depthq.train`` and the learned
prior's ``depthq.prior.train``): launch and rank detection, accelerator and precision
resolution, RNG state in checkpoints, checkpoints written atomically and read only when intact,
the CSV logger that survives ``--resume``, the learning-rate schedules and the progress bar."""

from depthq.runtime.callbacks import RNGState, SafeCheckpointIO, StepProgress
from depthq.runtime.checkpoints import checkpoint_step, read_checkpoint, verify_checkpoint, write_checkpoint
from depthq.runtime.launch import (
    LAUNCH_RANK_VARIABLES,
    TrainerPrecision,
    cpu_has_native_bf16,
    is_main_process,
    resolve_accelerator,
    resolve_precision,
)
from depthq.runtime.logs import AppendingCSVLogger, trim_history
from depthq.runtime.schedule import lr_factor, warmup_factor

__all__ = [
    "LAUNCH_RANK_VARIABLES",
    "AppendingCSVLogger",
    "RNGState",
    "SafeCheckpointIO",
    "StepProgress",
    "TrainerPrecision",
    "checkpoint_step",
    "cpu_has_native_bf16",
    "is_main_process",
    "lr_factor",
    "read_checkpoint",
    "resolve_accelerator",
    "resolve_precision",
    "trim_history",
    "verify_checkpoint",
    "warmup_factor",
    "write_checkpoint",
]
