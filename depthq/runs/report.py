"""``depthq eval`` and ``depthq compare`` on run folders: eval.json, report.md and figures.

``eval.json`` is ``EvalResult.to_dict()`` (see ``depthq.evaluate.result``, schema version 2);
read it back with ``read_eval`` (which knows the sections this layer composes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depthq.atomic import write_json, write_text
from depthq.errors import CorruptFileError, SchemaError, UsageError
from depthq.evaluate import figures
from depthq.evaluate.bits import CodePrior
from depthq.evaluate.evaluator import autocast
from depthq.evaluate.report import format_report, format_table, mi_panels
from depthq.evaluate.result import EvalOptions, EvalResult
from depthq.runs import sections  # noqa: F401  (registers the readers of the sections read_eval meets)
from depthq.runs.evaluation import RunEvaluation, evaluate_run, open_for, prior_is_current
from depthq.runs.saved import SavedRun


@dataclass
class EvalReport:
    """What ``write_eval`` wrote: the result, the folder and the figures' file names, and the
    evaluation they came from (the model and images, for more pictures)."""

    result: EvalResult
    out: Path
    figures: dict[str, str]
    evaluation: RunEvaluation


def default_eval_dir(run_dir: str | os.PathLike, options: EvalOptions) -> Path:
    """``eval-<split>`` for model.safetensors, ``eval-<split>-<stem>`` for other weights."""
    stem = Path(options.weights or "model.safetensors").stem
    return Path(run_dir) / (f"eval-{options.split}" if stem == "model" else f"eval-{options.split}-{stem}")


@torch.no_grad()
def sample_reconstructions(
    evaluation: RunEvaluation, n: int = 8
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The first ``n`` evaluated images (uint8, CPU), their codes (on the model's device) and
    their reconstructions (the mean of p(x|z), uint8, CPU), in the evaluation's precision."""
    model, images = evaluation.model, evaluation.images
    device = next(model.parameters()).device
    originals = images.batch(torch.arange(min(n, len(images))))
    with autocast(evaluation.result.precision, device):
        codes = model.encode(originals.to(device))
        recons = model.reconstruct(codes).cpu()
    return originals, codes, recons


@torch.no_grad()
def draw_figures(evaluation: RunEvaluation, out: Path, run_dir: Path, grid_images: int = 8) -> dict[str, str]:
    """The PNGs of a report: MI matrices, entropy maps, reconstructions, hierarchy, curves."""
    result, model = evaluation.result, evaluation.model
    originals, codes, recons = sample_reconstructions(evaluation, grid_images)
    with autocast(result.precision, next(model.parameters()).device):
        per_level = [model.decode_levels(codes, keep=[i]).cpu() for i in range(len(codes))]
    made = {"mutual_information": figures.mi_matrices(mi_panels(result), out / "mutual_information.png")}
    maps = [lv.entropy_map for lv in result.levels]
    if all(m is not None for m in maps):
        made["entropy_maps"] = figures.entropy_maps([np.array(m) for m in maps], out / "entropy_maps.png")
    made["reconstructions"] = figures.reconstructions(originals, recons, out / "reconstructions.png")
    made["hierarchy"] = figures.hierarchy(originals, recons, per_level, out / "hierarchy.png")
    if (run_dir / "metrics.csv").is_file():
        curves = figures.training_curves(run_dir / "metrics.csv", out / "training_curves.png")
        if curves is not None:
            made["training_curves"] = curves
    return {k: Path(v).name for k, v in made.items()}


def write_eval(
    run: SavedRun | str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    out: str | os.PathLike | None = None,
    *,
    priors: Sequence[CodePrior] = (),
    progress: bool = True,
) -> EvalReport:
    """Evaluate a run and write eval.json, report.md and the figures into ``out``
    (default ``RUN_DIR/eval-<split>``); ``priors`` add rates (see ``evaluate_run``)."""
    run = open_for(run, options)
    out = Path(out) if out is not None else default_eval_dir(run.run_dir, options)
    evaluation = evaluate_run(run, options, priors=priors, progress=progress)
    figure_files = draw_figures(evaluation, out, run.run_dir)
    write_json(out / "eval.json", evaluation.result.to_dict())
    write_text(out / "report.md", format_report(evaluation.result, figure_files))
    return EvalReport(evaluation.result, out, figure_files, evaluation)


def read_eval(path: str | os.PathLike) -> EvalResult:
    """An eval.json back as an ``EvalResult`` (SchemaError for another schema)."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err})") from err
    return EvalResult.from_dict(values, origin=str(path))


def _reusable(previous: EvalResult, run_dir: str | os.PathLike, options: EvalOptions) -> bool:
    """Whether a saved evaluation has every figure ``options`` ask for: the same options, the
    sections asked for (a file written before they existed has none), the current learned prior."""
    return (
        previous.options.same_figures(options)
        and (previous.anchors is not None or not options.anchors)
        and (previous.codec is not None or not options.codec_images)
        and prior_is_current(previous, run_dir, options)
    )


@dataclass
class Comparison:
    table: str
    results: dict[str, EvalResult]
    out: Path


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    *,
    names: Sequence[str] | None = None,
    reuse: bool = True,
    progress: bool = True,
) -> Comparison:
    """One table and one MI figure for several runs, reusing each run's
    ``eval-<split>/eval.json`` when it was made with the same options."""
    out = Path(out)
    if names is not None and len(names) != len(run_dirs):
        raise UsageError(f"--names has {len(names)} names for {len(run_dirs)} runs")
    names = list(names) if names else [Path(r).name for r in run_dirs]
    if len(set(names)) != len(names):
        names = [str(r) for r in run_dirs]
    results: dict[str, EvalResult] = {}
    for name, run in zip(names, run_dirs):
        cached = default_eval_dir(run, options) / "eval.json"
        previous = None
        if reuse and cached.is_file():
            try:
                previous = read_eval(cached)
            except SchemaError:  # written by another version: evaluate again
                previous = None
        if previous is not None and _reusable(previous, run, options):
            results[name] = previous
        else:  # missing, made with other options, or a prior was trained since: evaluate again
            results[name] = write_eval(run, options, progress=progress).result
    table = format_table(results)
    panels = [p for name, r in results.items() for p in mi_panels(r, prefix=f"{name}\n")]
    figure = figures.mi_matrices(panels, out / "mutual_information.png")
    write_json(
        out / "compare.json",
        {"runs": {n: str(r) for n, r in zip(names, run_dirs)}, "results": {n: r.to_dict() for n, r in results.items()}},
    )
    split = options.split
    write_text(out / "compare.md", f"# Comparison ({split} split)\n\n{table}\n\n![MI]({figure.name})\n")
    return Comparison(table, results, out)
