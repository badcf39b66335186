"""Results as text: the comparison table and report.md of evaluations (``EvalResult``).

Tables and reports read the typed result: a figure that does not apply prints "n/a" with the
reason (no likelihood, one codebook, no prior), decided by the result's types; a renamed field
is an AttributeError, not an empty cell. Writing them for a run folder is ``depthq.runs``'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from depthq.evaluate.result import PRIORS, EvalResult, LevelStats, RunSource
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
        ("colour bias per channel (levels, mean abs. per-image mean error)", _colour),
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


def _colour(r: EvalResult) -> str:
    return "n/a (not measured)" if r.colour_bias is None else " / ".join(f"{v:.1f}" for v in r.colour_bias)


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
        lines += [_learned_prior_line(result, src), ""]
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


def _learned_prior_line(result: EvalResult, src: RunSource) -> str:
    if src.prior is not None:
        return f"Learned prior: `{src.prior}` (the `learned` rows)."
    if result.options.prior is None:
        return "Learned prior: not used (--no-prior)."
    return (
        f"Learned prior: none for these weights; `depthq prior train {src.run_dir}` trains one, and "
        "`depthq eval` then adds `total bits/dim, learned prior`."
    )
