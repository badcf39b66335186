"""Evaluate a saved run on a split: the path of ``depthq eval``, down once.

1. Read the run: its ``Export`` record (typed RunConfig, step) and the checksummed weights.
2. Ask the run's data module (``RunConfig.datamodule``, with ``--data`` / ``--root`` applied)
   for the split at the last stage's size: it knows which set serves which size.
3. Fit the empirical prior on (a seeded subset of) that data module's training split.
4. Choose the learned prior (``EvalOptions.prior``, see ``depthq.prior.learned``).
5. ``evaluate``: stream the split once into an ``EvalResult``.
6. Its sections: the codec anchors on the same images (``options.anchors``, cached) and real
   .dqz files of the first ``options.codec_images`` images (needs the learned prior).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from depthq.config import RunConfig
from depthq.data import ImageSet
from depthq.errors import ConfigError, UsageError, data_errors
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
    prior_note: str = ""
    """Which learned prior was used, or why none (a line for the user)."""


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


def evaluate_run(
    run_dir: str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    *,
    priors: Sequence[CodePrior] = (),
    progress: bool = True,
) -> RunEvaluation:
    """Load a run and evaluate it on ``options.split`` of its data set (or of ``options.data``).

    The rates are measured under the uniform prior, the empirical prior fitted here (unless
    ``options.prior_images`` is 0), the learned prior of ``options.prior`` (unless ``priors``
    already hold one named "learned") and any further ``priors``.
    """
    from depthq.prior.io import state_digest
    from depthq.prior.learned import LearnedPrior, PriorChoice, choose_prior

    run_dir = Path(run_dir)
    weights = options.weights or "model.safetensors"
    export = read_export(run_dir, weights)
    model = load(run_dir, weights=weights, map_location=options.device)
    config = eval_config(export, options, run_dir)
    dm = config.datamodule()
    with data_errors(f"data {config.data.name!r}"):
        images = dm.dataset(options.split)
        train = dm.dataset("train") if options.prior_images != 0 else None
    digest = state_digest(model)
    given = next((p for p in priors if p.name == "learned"), None)
    if given is None:
        choice = choose_prior(
            run_dir, options.prior, model, images.image_size, weights_digest=digest, device=options.device
        )
    else:
        choice = PriorChoice(given if isinstance(given, LearnedPrior) else None, f"learned prior: {given.description}")
    if options.codec_images and choice.prior is None:
        raise UsageError(f"--codec needs a learned prior; {choice.note}")
    learned = [choice.prior] if given is None and choice.prior is not None else []
    fitted = [] if train is None else [fit_prior(model, train, options, seed=config.train.seed, progress=progress)]
    info = None if choice.prior is None else choice.prior.info
    source = RunSource(
        run_dir=str(run_dir),
        weights=weights,
        step=export.step,
        parameters=model.num_parameters(),
        quantizer=model.config.quantizer,
        weights_digest=digest,
        prior=None if info is None else str(info.folder),
        prior_digest=None if info is None else info.digest,
    )
    result = evaluate(model, images, options, priors=[*fitted, *priors, *learned], source=source, progress=progress)
    if options.anchors:
        from depthq.evaluate.anchor_section import anchor_section

        result = result.with_sections(anchors=anchor_section(images.images, result))
    if options.codec_images:
        from depthq.codec.section import codec_section

        first = images.batch(torch.arange(min(options.codec_images, len(images))))
        result = result.with_sections(codec=codec_section(model, choice.prior, first))
    return RunEvaluation(result, model, images, choice.note)


def prior_is_current(result: EvalResult, run_dir: str | os.PathLike, options: EvalOptions) -> bool:
    """Whether a saved evaluation used the learned prior ``evaluate_run`` would use now with
    ``options.prior`` ("auto" or None), judged from prior.json alone: False when a prior was
    trained (or retrained) for the evaluated weights since."""
    from depthq.prior.io import META, prior_folder

    used = None if result.source is None else result.source.prior_digest
    if options.prior is None or result.source is None:
        return used is None
    meta = prior_folder(run_dir if options.prior == "auto" else options.prior) / META
    if result.source.weights_digest is None:  # saved before the digests were recorded
        return used is None and not meta.is_file()
    try:
        values = json.loads(meta.read_text())
        now = (
            values["digest"]
            if (
                values["autoencoder_digest"] == result.source.weights_digest
                and values["image_channels"] * values["image_size"] ** 2 == result.dims
            )
            else None
        )
    except (OSError, ValueError, KeyError, TypeError):
        now = None
    return used == now
