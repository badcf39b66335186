"""The learned prior of a run folder: training it (``depthq prior train``) and drawing from it
(``depthq sample``), on a ``SavedRun``."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from depthq.errors import UsageError
from depthq.io import WEIGHTS
from depthq.prior.config import PriorRunConfig
from depthq.prior.io import PriorInfo
from depthq.prior.train import prior_device
from depthq.prior.train import train_prior as train_codes_prior
from depthq.runs.saved import SavedRun


def train_prior(
    run: SavedRun | str | os.PathLike,
    config: PriorRunConfig,
    *,
    out: str | os.PathLike | None = None,
    weights: str = WEIGHTS,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> dict:
    """Train a prior over the codes of a run's autoencoder (the run opened once, on the prior's
    device); returns ``summary.json``'s content (see ``depthq.prior.train``).

    Args:
        run: a ``depthq train`` run directory (its ``weights``), or a ``SavedRun`` on the prior's
            device (``depthq.prior.train.prior_device``).
        config: the prior's architecture and training.
        out: the prior's folder (default ``RUN_DIR/prior``).
        resume: continue from ``out/checkpoints/last.ckpt``.
        callbacks: extra Lightning callbacks.
    """
    if not isinstance(run, SavedRun):
        run = SavedRun.open(run, weights=weights, device=prior_device(config))
    if run.model.config.continuous:
        raise UsageError(
            f"{run.run_dir} is a continuous model (model.continuous, an ablation): its codes are not what it "
            "decodes, so a prior over them means nothing"
        )
    folder = Path(out) if out is not None else run.prior_dir
    return train_codes_prior(
        run.model,
        config,
        digest=run.digest,
        data=run.run_data,
        out=folder,
        source=run.weights_path,
        resume=resume,
        callbacks=callbacks,
    )


@dataclass
class Samples:
    """Images drawn from a run's learned prior."""

    images: torch.Tensor
    """uint8 (n, C, H, W)."""
    info: PriorInfo
    prior_seconds: float
    """Drawing the codes (step by step, with the key/value cache)."""
    decode_seconds: float
    """Decoding them with the autoencoder."""
    steps: int
    """Prior steps per image."""


def sample(
    run: SavedRun,
    n: int,
    *,
    prior: str | os.PathLike | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    pixels: str = "mean",
) -> Samples:
    """Draw ``n`` images: codes from the learned prior (``prior``: its folder, default the run's
    own) at ``temperature``, decoded to the mean of p(x|z) or a sample of it (``pixels``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    model, (codes_prior, info) = run.model, run.prior(prior)
    generator = torch.Generator(device=run.device).manual_seed(seed)
    start = time.perf_counter()
    codes = codes_prior.sample(n, temperature=temperature, generator=generator)
    drawn = time.perf_counter()
    images = model.reconstruct(codes, kind=pixels, generator=generator)
    return Samples(images, info, drawn - start, time.perf_counter() - drawn, codes_prior.steps)
