"""Where a training runs: the launch (which process owns the folder), the accelerator, the precision.

The same for the autoencoder (``depthq.train``) and the learned prior (``depthq.prior.train``):
a process started by Lightning's launcher, torchrun or SLURM's srun knows its rank from the
environment before any process group exists, so the owner of a run folder is known up front.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

#: a resolved ``train.precision``, as Lightning's ``Trainer(precision=...)`` takes it
TrainerPrecision = Literal["32", "bf16-mixed", "16-mixed"]
_TRAINER_PRECISIONS: dict[str, TrainerPrecision] = {"32": "32", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}

LAUNCH_RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",  # Lightning's launcher, torchrun
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",  # srun tasks
)


def is_main_process() -> bool:
    """True in the process that owns the run directory and the terminal: the single process,
    or rank 0 of node 0 of a DDP run started by Lightning's launcher, torchrun or SLURM's srun."""
    return all(os.environ.get(var, "0") == "0" for var in LAUNCH_RANK_VARIABLES)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_accelerator(setting: str) -> str:
    """``train.accelerator`` with "auto" resolved: "gpu" when CUDA is available, else "cpu"."""
    if setting == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return setting


def resolve_precision(setting: str | int, accelerator: str, *, cpu_bf16: bool) -> TrainerPrecision:
    """``train.precision`` with "auto" resolved: bf16-mixed on a GPU that has bf16 (16-mixed on
    older ones); on a CPU bf16-mixed when ``cpu_bf16`` (the caller measured that it pays), else 32.
    A YAML ``32`` (an int) is ``"32"``."""
    setting = str(setting)
    if setting != "auto":
        if setting not in _TRAINER_PRECISIONS:
            raise ValueError(f"precision must be one of {['auto', *_TRAINER_PRECISIONS]}, got {setting!r}")
        return _TRAINER_PRECISIONS[setting]
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_bf16 else "32"
