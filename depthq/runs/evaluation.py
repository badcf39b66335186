"""Evaluate a saved run on a split: the path of ``depthq eval``, down once.

1. Open the run once (``SavedRun``): its record (typed RunConfig, step), the checksummed
   weights and their digest.
2. Ask the run's data module (``RunConfig.datamodule``, with ``--data`` / ``--root`` applied)
   for the split at the last stage's size: it knows which set serves which size.
3. Fit the empirical prior on (a seeded subset of) that data module's training split.
4. Choose the learned prior (``EvalOptions.prior``, see ``depthq.prior.learned``).
5. ``evaluate``: stream the split once into an ``EvalResult``.
6. Its sections: the codec anchors on the same images (``options.anchors``, cached) and real
   .dqz files of the first ``options.codec_images`` images (needs the learned prior).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from depthq.codec.section import codec_section
from depthq.data import ImageSet
from depthq.errors import UsageError
from depthq.evaluate.anchor_section import anchor_section
from depthq.evaluate.bits import CodePrior
from depthq.evaluate.evaluator import evaluate, fit_prior
from depthq.evaluate.result import EvalOptions, EvalResult, RunSource
from depthq.models import HierarchicalAutoencoder
from depthq.prior.io import META, prior_folder, read_prior_info
from depthq.prior.learned import LearnedPrior, PriorChoice
from depthq.runs.saved import SavedRun


@dataclass
class RunEvaluation:
    """An evaluated run: the result, and the model and images it was computed on (for figures)."""

    result: EvalResult
    model: HierarchicalAutoencoder
    images: ImageSet
    prior_note: str = ""
    """Which learned prior was used, or why none (a line for the user)."""


def open_for(run: SavedRun | str | os.PathLike, options: EvalOptions) -> SavedRun:
    """``run`` itself, or the run folder opened with ``options.weights`` on ``options.device``."""
    weights = options.weights or "model.safetensors"
    if isinstance(run, SavedRun):
        if run.weights != weights:
            raise UsageError(f"the run was opened with {run.weights}, the evaluation asks for {weights}")
        return run
    return SavedRun.open(run, weights=weights, device=options.device)


def evaluate_run(
    run: SavedRun | str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    *,
    priors: Sequence[CodePrior] = (),
    progress: bool = True,
) -> RunEvaluation:
    """Evaluate a run on ``options.split`` of its data set (or of ``options.data``).

    The rates are measured under the uniform prior, the empirical prior fitted here (unless
    ``options.prior_images`` is 0), the learned prior of ``options.prior`` (unless ``priors``
    already hold one named "learned") and any further ``priors``.
    """
    run = open_for(run, options)
    config = run.config(options.data, options.root)
    dm = run.datamodule(options.data, options.root)
    images = dm.dataset(options.split)
    train = dm.dataset("train") if options.prior_images != 0 else None
    given = next((p for p in priors if p.name == "learned"), None)
    if given is None:
        choice = run.learned_prior(options.prior, images.image_size)
    else:
        choice = PriorChoice(given if isinstance(given, LearnedPrior) else None, f"learned prior: {given.description}")
    if options.codec_images and choice.prior is None:
        raise UsageError(f"--codec needs a learned prior; {choice.note}")
    learned = [choice.prior] if given is None and choice.prior is not None else []
    model = run.model
    fitted = [] if train is None else [fit_prior(model, train, options, seed=config.train.seed, progress=progress)]
    info = None if choice.prior is None else choice.prior.info
    source = RunSource(
        run_dir=str(run.run_dir),
        weights=run.weights,
        step=run.export.step,
        parameters=model.num_parameters(),
        quantizer=model.config.quantizer,
        weights_digest=run.digest,
        prior=None if info is None else str(info.folder),
        prior_digest=None if info is None else info.digest,
    )
    result = evaluate(model, images, options, priors=[*fitted, *priors, *learned], source=source, progress=progress)
    if options.anchors:
        result = result.with_sections(anchors=anchor_section(images.images, result))
    if options.codec_images and choice.prior is not None:  # (None was refused above, before the work)
        first = images.batch(torch.arange(min(options.codec_images, len(images))))
        result = result.with_sections(codec=codec_section(model, choice.prior, first, autoencoder_digest=run.digest))
    return RunEvaluation(result, model, images, choice.note)


def prior_is_current(result: EvalResult, run_dir: str | os.PathLike, options: EvalOptions) -> bool:
    """Whether a saved evaluation used the learned prior ``evaluate_run`` would use now with
    ``options.prior`` ("auto" or None), judged from prior.json alone: False when a prior was
    trained (or retrained) for the evaluated weights since."""
    used = None if result.source is None else result.source.prior_digest
    if options.prior is None or result.source is None:
        return used is None
    folder = prior_folder(run_dir if options.prior == "auto" else options.prior)
    if result.source.weights_digest is None:  # saved before the digests were recorded
        return used is None and not (folder / META).is_file()
    try:
        info = read_prior_info(folder)
    except (OSError, ValueError):  # none trained, or damaged: no learned prior now
        return used is None
    current = info.autoencoder_digest == result.source.weights_digest and info.dims == result.dims
    return used == (info.digest if current else None)
