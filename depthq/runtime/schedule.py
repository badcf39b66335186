"""Learning-rate schedules as factors of the peak rate (for ``torch.optim.lr_scheduler.LambdaLR``):
the autoencoder's (``train.lr_schedule``) and the learned prior's."""

from __future__ import annotations

import math


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of the learning rate: (step + 1) / warmup_steps, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def lr_factor(
    step: int, *, warmup_steps: int, total_steps: int, schedule: str = "constant", min_ratio: float = 0.0
) -> float:
    """Learning rate of optimizer step ``step`` (0-based) as a fraction of ``train.lr``.

    Linear warm-up over ``warmup_steps``; then 1 ("constant"), or a cosine from 1 down to
    ``min_ratio`` at the last step ``total_steps - 1`` ("cosine"). With a warm-up as long as the
    run there is no decay left: the rate is the warm-up's to the end.
    """
    factor = warmup_factor(step, warmup_steps)
    if schedule == "constant" or step < warmup_steps:
        return factor
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    span = max(total_steps - 1 - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
