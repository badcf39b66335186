"""Evaluate a saved run on a split: the path of ``depthq eval``, down once.

1. Read the run: its ``Export`` record (typed RunConfig, step) and the checksummed weights.
2. Ask the run's data module (``RunConfig.datamodule``, with ``--data`` / ``--root`` applied)
   for the split at the last stage's size: it knows which set serves which size.
3. Fit the empirical prior on (a seeded subset of) that data module's training split.
4. ``evaluate``: stream the split once into an ``EvalResult``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from depthq.config import RunConfig
from depthq.data import ImageSet
from depthq.errors import ConfigError, data_errors
from depthq.evaluate.bits import CodePrior
from depthq.evaluate.evaluator import evaluate, fit_prior
from depthq.evaluate.result import EvalOptions, EvalResult, RunSource
from depthq.io import Export, load, read_export
from depthq.models import HierarchicalAutoencoder


@dataclass
class RunEvaluation:
    """An evaluated run: the result, and the model and images it was computed on (for figures)."""

    result: EvalResult
    model: HierarchicalAutoencoder
    images: ImageSet


def eval_config(export: Export, options: EvalOptions, origin: Path) -> RunConfig:
    """The run config whose data module serves the evaluation: the run's own, with
    ``options.data`` / ``options.root`` applied."""
    run = export.run
    if run is None:
        if options.data is None:
            raise ConfigError(f"{origin} records no run config (saved outside depthq train): pass --data")
        run = RunConfig(model=export.model)
    data = run.data
    if options.data is not None:
        data = dataclasses.replace(data, name=options.data, root=options.root)
    elif options.root is not None:
        data = dataclasses.replace(data, root=options.root)
    return dataclasses.replace(run, data=data)


def evaluate_run(run_dir: str | os.PathLike, options: EvalOptions = EvalOptions(), *,
                 priors: Sequence[CodePrior] = (), progress: bool = True) -> RunEvaluation:
    """Load a run and evaluate it on ``options.split`` of its data set (or of ``options.data``).

    The rates are measured under the uniform prior, the empirical prior fitted here (unless
    ``options.prior_images`` is 0) and any further ``priors`` (e.g. a learned one).
    """
    run_dir = Path(run_dir)
    weights = options.weights or "model.safetensors"
    export = read_export(run_dir, weights)
    model = load(run_dir, weights=weights, map_location=options.device)
    config = eval_config(export, options, run_dir)
    dm = config.datamodule()
    with data_errors(f"data {config.data.name!r}"):
        images = dm.dataset(options.split)
        train = dm.dataset("train") if options.prior_images != 0 else None
    fitted = [] if train is None else [fit_prior(model, train, options, seed=config.train.seed, progress=progress)]
    source = RunSource(run_dir=str(run_dir), weights=weights, step=export.step,
                       parameters=model.num_parameters(), quantizer=model.config.quantizer)
    result = evaluate(model, images, options, priors=[*fitted, *priors], source=source, progress=progress)
    return RunEvaluation(result, model, images)
