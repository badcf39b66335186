"""``depthq eval`` and ``depthq compare``: eval.json, report.md and figures for trained runs.

``eval.json`` is ``EvalResult.to_dict()`` (see ``depthq.evaluate.result``, schema version 2);
read it back with ``EvalResult.from_dict``. Tables and reports read the typed result: a figure
that does not apply prints "n/a" with the reason (no likelihood, one codebook, no prior), decided
by the result's types; a renamed field is an AttributeError, not an empty cell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depthq.atomic import write_json, write_text
from depthq.errors import CorruptFileError, SchemaError, UsageError
from depthq.evaluate import figures
from depthq.evaluate.bits import CodePrior
from depthq.evaluate.evaluator import autocast
from depthq.evaluate.result import PRIORS, EvalOptions, EvalResult, LevelStats
from depthq.evaluate.run import RunEvaluation, evaluate_run, prior_is_current
from depthq.tables import markdown_table

NO_LIKELIHOOD = "n/a (no likelihood)"
NOT_FITTED = "n/a (no prior)"


def _per_level(fn: Callable[[LevelStats], str]) -> Callable[[EvalResult], str]:
    return lambda r: " / ".join(fn(lv) for lv in r.levels)


def _bits(value: float | None, missing: str, digits: int = 3) -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _total(prior: str) -> Callable[[EvalResult], str]:
    def cell(r: EvalResult) -> str:
        if r.likelihood is None:
            return NO_LIKELIHOOD
        return _bits(r.total(prior), NOT_FITTED)

    return cell


def _rate_per_image(prior: str) -> Callable[[EvalResult], str]:
    def cell(r: EvalResult) -> str:
        rate = r.rate(prior)
        return NOT_FITTED if rate is None else f"{rate.bits_per_image:.0f}"

    return cell


def _mi(lv: LevelStats) -> str:
    if lv.codebooks == 1:
        return "n/a (M=1)"
    value = lv.mean_offdiagonal_mi
    return "not measured" if value is None else f"{value:.3f}"


Row = tuple[str, Callable[[EvalResult], str]]
#: priors every table shows (n/a where not measured); others (a learned prior) when measured
TABLE_PRIORS = ("uniform", "empirical")


def _rows(results: Mapping[str, EvalResult]) -> list[Row]:
    priors = [
        *TABLE_PRIORS,
        *(p for p in PRIORS if p not in TABLE_PRIORS and any(r.rate(p) is not None for r in results.values())),
    ]
    return [
        ("distortion bits/dim (paper convention)", lambda r: _bits(r.distortion, NO_LIKELIHOOD)),
        *((f"total bits/dim, {p} prior", _total(p)) for p in priors),
        *((f"rate, bits per image ({p} prior)", _rate_per_image(p)) for p in priors),
        ("MSE (pixel levels^2)", lambda r: f"{r.mse:.1f}"),
        ("PSNR (dB)", lambda r: f"{r.psnr:.2f}"),
        ("codebooks x K per level", _per_level(lambda lv: f"{lv.codebooks}x{lv.codebook_size}")),
        ("codes used (mean fraction per level)", _per_level(lambda lv: f"{lv.mean_used_fraction:.0%}")),
        ("entropy (mean nats per codebook, per level)", _per_level(lambda lv: f"{lv.mean_entropy:.2f}")),
        ("perplexity (mean per codebook, per level)", _per_level(lambda lv: f"{lv.mean_perplexity:.1f}")),
        (
            "information per position (bits, of capacity)",
            _per_level(lambda lv: f"{lv.information_bits:.1f} of {lv.capacity_bits:g}"),
        ),
        ("mean off-diagonal MI (nats, per level)", _per_level(_mi)),
        ("parameters", lambda r: "n/a (unknown)" if r.source is None else f"{r.source.parameters:,}"),
    ]


def _nonfinite_rows(results: Mapping[str, EvalResult]) -> list[tuple[str, list[str]]]:
    """A warning row when any result quantized non-finite encoder outputs (none normally)."""
    if not any(lv.nonfinite for r in results.values() for lv in r.levels):
        return []
    return [
        (
            "WARNING non-finite encoder vectors (per level)",
            [" / ".join(str(lv.nonfinite) for lv in r.levels) for r in results.values()],
        )
    ]


def _section_rows(results: Mapping[str, EvalResult]) -> list[tuple[str, list[str]]]:
    """Rows of the results' sections (anchors, codec): a run without that section reads n/a."""
    labels: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    for name, r in results.items():
        for section in r.sections:
            for label, text in section.table_rows():
                if label not in labels:
                    labels.append(label)
                cells[(name, label)] = text
    return [(label, [cells.get((name, label), "n/a (not measured)") for name in results]) for label in labels]


def format_table(results: Mapping[str, EvalResult], extra: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """One Markdown table: a row per figure, a column per result; ``extra`` rows are (label,
    one text per column)."""
    names = list(results)
    table = [[label, *(fn(results[n]) for n in names)] for label, fn in _rows(results)]
    for label, texts in [*_nonfinite_rows(results), *_section_rows(results), *extra]:
        if len(texts) != len(names):
            raise ValueError(f"row {label!r} has {len(texts)} cells for {len(names)} columns")
        table.append([label, *texts])
    return markdown_table(["metric", *names], table, align="l" + "r" * len(names))


def mi_panels(result: EvalResult, prefix: str = "") -> list[tuple[str, np.ndarray | None]]:
    """(title, MI matrix or None) per level, for ``figures.mi_matrices``."""
    return [
        (f"{prefix}level {lv.level}", None if lv.mutual_information is None else np.array(lv.mutual_information))
        for lv in result.levels
    ]


def format_report(result: EvalResult, figure_files: Mapping[str, str] = {}) -> str:
    """report.md: the figures of one evaluation, readable."""
    src, opt = result.source, result.options
    where = f"`{src.run_dir}`" if src is not None else "a model"
    lines = [
        f"# Evaluation of {where}",
        "",
        f"{result.images:,} images of the **{result.split}** split of `{result.data}` "
        f"({result.dims} dims each)"
        + (
            f", weights `{src.weights}` at step {src.step}, {src.quantizer} quantizer, {src.parameters:,} parameters"
            if src is not None
            else ""
        )
        + f", evaluated in {'fp32' if result.precision == '32' else result.precision}.",
        "",
    ]
    if result.figures:
        lines += ["| figure | bits/dim | prior |", "|---|---|---|"]
        lines += [f"| {f.label} | {f.bits_per_dim:.4f} | {f.prior or '-'} |" for f in result.figures]
        lines.append("")
    if result.likelihood is None:
        lines += ["Distortion and totals: n/a (the mse head has no likelihood).", ""]
    lines += [
        f"MSE {result.mse:.2f} (pixel levels²), PSNR {result.psnr:.2f} dB; rate "
        + ", ".join(f"{r.bits_per_image:,.0f} bits/image ({r.prior} prior)" for r in result.rates),
        "",
        f"Entropy, MI and information estimates: {opt.estimator}. Information per position is the "
        "joint entropy of a position's codes (the sum of the codebooks' entropies minus their "
        "total correlation); a plug-in estimate from N positions cannot exceed log2 N bits.",
        "",
    ]
    if src is not None and src.run_dir is not None:
        lines += [_learned_prior_line(result), ""]
    for section in result.sections:
        lines += [section.report_markdown(), ""]
    for lv in result.levels:
        lines += [
            f"## Level {lv.level}: {lv.codebooks} codebook{'s' if lv.codebooks > 1 else ''} of "
            f"K = {lv.codebook_size}, {lv.positions} positions per image (N = {lv.samples:,} evaluated)",
            "",
        ]
        parts = [
            f"information per position {lv.information_bits:.2f} bits of a capacity of "
            f"{lv.capacity_bits:g} ({lv.information_fraction:.0%}; at most log2 N = "
            f"{lv.information_cap_bits:.1f} measurable)"
        ]
        if lv.position_entropy is not None:
            parts.append(f"mean entropy per position {lv.position_entropy:.3f} nats/pixel")
        if lv.codebooks > 1:
            mi = lv.mean_offdiagonal_mi
            parts.append(
                ("" if mi is None else f"mean off-diagonal MI {mi:.4f} nats; ")
                + f"total correlation {lv.total_correlation:.3f} nats"
            )
        lines += ["; ".join(parts) + ".", ""]
        if lv.nonfinite:
            lines += [
                f"**Warning:** {lv.nonfinite:,} encoder vectors of this level (one per codebook and "
                "position) had a NaN or infinite component; the quantizer gave them code 0, so every "
                "figure above counts them as code 0.",
                "",
            ]
        lines += ["| codebook | entropy (nats) | perplexity | codes used | dead codes |", "|---|---|---|---|---|"]
        for m, (h, p, u, d) in enumerate(zip(lv.entropies, lv.perplexities, lv.used_fractions, lv.dead_codes)):
            lines.append(f"| {m} | {h:.3f} | {p:.1f} | {u:.0%} | {d} |")
        lines.append("")
    if figure_files:
        lines += ["## Figures", "", *(f"![{name}]({file})" for name, file in figure_files.items())]
    return "\n".join(lines) + "\n"


def _learned_prior_line(result: EvalResult) -> str:
    src = result.source
    if src.prior is not None:
        return f"Learned prior: `{src.prior}` (the `learned` rows)."
    if result.options.prior is None:
        return "Learned prior: not used (--no-prior)."
    return (
        f"Learned prior: none for these weights; `depthq prior train {src.run_dir}` trains one, and "
        "`depthq eval` then adds `total bits/dim, learned prior`."
    )


@dataclass
class EvalReport:
    """What ``write_eval`` wrote: the result, the folder and the figures' file names."""

    result: EvalResult
    out: Path
    figures: dict[str, str]
    evaluation: RunEvaluation | None = None


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
    run_dir: str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    out: str | os.PathLike | None = None,
    *,
    priors: Sequence[CodePrior] = (),
    progress: bool = True,
) -> EvalReport:
    """Evaluate a run and write eval.json, report.md and the figures into ``out``
    (default ``RUN_DIR/eval-<split>``); ``priors`` add rates (see ``evaluate_run``)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_eval_dir(run_dir, options)
    evaluation = evaluate_run(run_dir, options, priors=priors, progress=progress)
    figure_files = draw_figures(evaluation, out, run_dir)
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
