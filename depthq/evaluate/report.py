"""``depthq eval`` and ``depthq compare``: eval.json, report.md and figures for trained runs.

``eval.json`` keys (all figures of the evaluated split):

- ``images``, ``dims`` (C*H*W), ``data``, ``split``, ``precision``, ``run_dir``, ``weights``,
  ``step``, ``parameters``, ``quantizer``;
- ``bits_per_dim``: ``distortion``, ``rate_uniform``, ``total_uniform``, ``rate_empirical``,
  ``total_empirical`` (null for the mse head), with ``labels`` naming what each contains and
  ``prior`` naming how the empirical prior was fitted;
- ``rate_bits_per_image``: ``uniform``, ``empirical``;
- ``mse`` (pixel levels^2), ``psnr`` (dB);
- ``levels``: per level ``codebook_size``, ``positions``, per codebook ``entropy_nats``,
  ``perplexity``, ``used_fraction``, ``dead_codes``; ``mean_position_entropy_nats`` (the mean of
  the entropy map, nats/pixel); for M > 1 ``mutual_information_nats`` (M x M, entropies on the
  diagonal), ``mean_offdiagonal_mi_nats``, ``total_correlation_nats``;
- ``correction``: "none" (plug-in estimates) or "miller-madow" (also applied to ``perplexity``);
- ``options``: the options the evaluation ran with (data, root, split, weights, prior_images,
  precision, correction): ``depthq compare`` reuses an eval.json only when they match;
- ``figures``: file names of the PNGs next to eval.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from depthq.evaluate import figures
from depthq.evaluate.run import evaluate_run
from depthq.atomic import write_json
from depthq.tables import markdown_table


def mean_of(values: Sequence[float]) -> float:
    """The plain mean of a list (nan for an empty one)."""
    return float(sum(values) / len(values)) if values else float("nan")


ROWS = [  # (label, function of an eval result -> text)
    ("distortion bits/dim (paper convention)", lambda r: f"{r['bits_per_dim']['distortion']:.3f}"),
    ("total bits/dim, uniform prior", lambda r: f"{r['bits_per_dim']['total_uniform']:.3f}"),
    ("total bits/dim, empirical prior", lambda r: f"{r['bits_per_dim']['total_empirical']:.3f}"),
    ("rate, bits per image (uniform prior)", lambda r: f"{r['rate_bits_per_image']['uniform']:.0f}"),
    ("rate, bits per image (empirical prior)", lambda r: f"{r['rate_bits_per_image']['empirical']:.0f}"),
    ("MSE (pixel levels^2)", lambda r: f"{r['mse']:.1f}"),
    ("PSNR (dB)", lambda r: f"{r['psnr']:.2f}"),
    ("codebooks x K per level", lambda r: " / ".join(
        f"{len(lv['entropy_nats'])}x{lv['codebook_size']}" for lv in r["levels"])),
    ("codes used (mean fraction per level)", lambda r: " / ".join(
        f"{mean_of(lv['used_fraction']):.0%}" for lv in r["levels"])),
    ("entropy (mean nats per codebook, per level)", lambda r: " / ".join(
        f"{mean_of(lv['entropy_nats']):.2f}" for lv in r["levels"])),
    ("perplexity (mean per codebook, per level)", lambda r: " / ".join(
        f"{mean_of(lv['perplexity']):.1f}" for lv in r["levels"])),
    ("mean off-diagonal MI (nats, per level)", lambda r: " / ".join(
        f"{lv['mean_offdiagonal_mi_nats']:.3f}" if "mean_offdiagonal_mi_nats" in lv else "n/a (M=1)"
        for lv in r["levels"])),
    ("parameters", lambda r: f"{r['parameters']:,}"),
]


def format_table(results: dict[str, dict], extra_rows: Sequence = ()) -> str:
    """One Markdown table: a row per metric, a column per run; missing figures show n/a."""
    rows = [*ROWS, *extra_rows]

    def cell(fn, r):
        try:
            return fn(r)
        except (KeyError, TypeError):
            return "n/a"

    names = list(results)
    table = [[label, *(cell(fn, results[n]) for n in names)] for label, fn in rows]
    return markdown_table(["metric", *names], table, align="l" + "r" * len(names))


def mi_panels(result: dict, prefix: str = "") -> list[tuple[str, np.ndarray | None]]:
    return [(f"{prefix}level {lv['level']}",
             np.array(lv["mutual_information_nats"]) if "mutual_information_nats" in lv else None)
            for lv in result["levels"]]


@torch.no_grad()
def write_eval(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
               correction: str = "none", return_grid: bool = False, **kwargs):
    """Evaluate a run and write eval.json, report.md and the figures into ``out``.

    ``kwargs`` go to :func:`depthq.evaluate.run.evaluate_run` (data, root, split, weights,
    prior_images, batch_size, precision, device, progress). Returns the result, or
    (result, (originals, reconstructions)) with ``return_grid``.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_eval_dir(run_dir, kwargs.get("split", "test"),
                                                             kwargs.get("weights", "model.safetensors"))
    model, result, evaluator, grid = evaluate_run(run_dir, diagnostics=True, **kwargs)
    result["correction"] = correction
    result["options"] = eval_options(correction=correction, **kwargs)
    for entry, stats in zip(result["levels"], evaluator.codes):
        entry["entropy_nats"] = stats.entropies(correction).tolist()
        entry["perplexity"] = [float(np.exp(h)) for h in entry["entropy_nats"]]  # exp(entropy) as reported
        entropy_map = stats.entropy_map(correction).numpy()
        entry["mean_position_entropy_nats"] = float(entropy_map.mean())
        if stats.pairwise:
            entry["mutual_information_nats"] = stats.mutual_information(correction).tolist()
            entry["mean_offdiagonal_mi_nats"] = stats.mean_offdiagonal_mi(correction)
            entry["total_correlation_nats"] = stats.total_correlation(correction)
    originals, recons = grid
    device = next(model.parameters()).device
    codes = model.encode(originals.to(device))
    per_level = [model.decode_levels(codes, keep=[i]).cpu() for i in range(len(codes))]
    made = {
        "mutual_information": figures.mi_matrices(mi_panels(result), out / "mutual_information.png"),
        "entropy_maps": figures.entropy_maps([s.entropy_map(correction).numpy() for s in evaluator.codes],
                                             out / "entropy_maps.png"),
        "reconstructions": figures.reconstructions(originals, recons, out / "reconstructions.png"),
        "hierarchy": figures.hierarchy(originals, recons, per_level, out / "hierarchy.png"),
    }
    if (run_dir / "metrics.csv").is_file():
        curves = figures.training_curves(run_dir / "metrics.csv", out / "training_curves.png")
        if curves is not None:
            made["training_curves"] = curves
    result["figures"] = {k: Path(v).name for k, v in made.items()}
    write_json(out / "eval.json", result)
    (out / "report.md").write_text(format_report(result))
    result["out"] = str(out)
    return (result, grid) if return_grid else result


def format_report(result: dict) -> str:
    """report.md: the figures of one evaluation, readable."""
    lines = [f"# Evaluation of `{result['run_dir']}`", "",
             f"{result['images']:,} images of the **{result['split']}** split of `{result['data']}` "
             f"({result['dims']} dims each), weights `{result['weights']}` at step {result['step']}, "
             f"{result['quantizer']} quantizer, {result['parameters']:,} parameters, "
             f"evaluated in {'fp32' if result['precision'] == '32' else result['precision']}.", ""]
    bits = result.get("bits_per_dim")
    if bits:
        lines += ["| figure | bits/dim |", "|---|---|"]
        lines += [f"| {result['labels'][k]} | {v:.4f} |" for k, v in bits.items()]
        lines += ["", f"Empirical prior: {result.get('prior', 'not fitted')}.", ""]
    else:
        lines += [f"bits/dim: {result['labels']['bits_per_dim']}", ""]
    lines += [f"MSE {result['mse']:.2f} (pixel levels²), PSNR {result['psnr']:.2f} dB; rate "
              + ", ".join(f"{v:,.0f} bits/image ({k} prior)" for k, v in result["rate_bits_per_image"].items()),
              "", f"Entropy and MI estimates: {'plug-in' if result['correction'] == 'none' else 'Miller-Madow corrected'}.", ""]
    for lv in result["levels"]:
        lines += [f"## Level {lv['level']} (K = {lv['codebook_size']}, {lv['positions']} positions)", ""]
        summary = f"mean entropy per position {lv['mean_position_entropy_nats']:.3f} nats/pixel"
        if "mean_offdiagonal_mi_nats" in lv:
            summary += (f"; mean off-diagonal MI {lv['mean_offdiagonal_mi_nats']:.4f} nats; "
                        f"total correlation {lv['total_correlation_nats']:.3f} nats")
        lines += [summary, "", "| codebook | entropy (nats) | perplexity | codes used | dead codes |",
                  "|---|---|---|---|---|"]
        for m, (h, p, u, d) in enumerate(zip(lv["entropy_nats"], lv["perplexity"], lv["used_fraction"],
                                             lv["dead_codes"])):
            lines.append(f"| {m} | {h:.3f} | {p:.1f} | {u:.0%} | {d} |")
        lines.append("")
    lines += ["## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in result.get("figures", {}).items()]
    return "\n".join(lines) + "\n"


def default_eval_dir(run_dir: Path, split: str, weights: str) -> Path:
    """``eval-<split>`` for model.safetensors, ``eval-<split>-<stem>`` for other weights."""
    stem = Path(weights).stem
    return run_dir / (f"eval-{split}" if stem == "model" else f"eval-{split}-{stem}")


def eval_options(**kwargs) -> dict:
    """The options that change an evaluation's figures (recorded in eval.json; compare reuses an
    eval.json only when they match)."""
    keys = ("data", "root", "split", "weights", "prior_images", "precision", "correction")
    defaults = {"split": "test", "weights": "model.safetensors", "prior_images": 8192, "precision": "32",
                "correction": "none", "data": None, "root": None}
    return {k: kwargs.get(k, defaults[k]) for k in keys}


def compare_runs(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 names: Sequence[str] | None = None, reuse: bool = True, **kwargs) -> dict:
    """One table and one MI figure for several runs (evaluating those without an eval.json)."""
    out = Path(out)
    split = kwargs.get("split", "test")
    names = list(names) if names else [Path(r).name for r in run_dirs]
    if len(set(names)) != len(names):
        names = [str(r) for r in run_dirs]
    wanted = eval_options(**kwargs)
    results = {}
    for name, run in zip(names, run_dirs):
        cached = default_eval_dir(Path(run), split, wanted["weights"]) / "eval.json"
        previous = json.loads(cached.read_text()) if reuse and cached.is_file() else None
        if previous is not None and previous.get("options") == wanted:
            results[name] = previous
        else:  # missing, or made with other options: evaluate again
            results[name] = write_eval(run, **kwargs)
    table = format_table(results)
    panels = [p for name, r in results.items() for p in mi_panels(r, prefix=f"{name}\n")]
    figure = figures.mi_matrices(panels, out / "mutual_information.png")
    write_json(out / "compare.json", {"runs": {n: str(r) for n, r in zip(names, run_dirs)}, "results": results})
    (out / "compare.md").write_text(f"# Comparison ({split} split)\n\n{table}\n\n![MI]({figure.name})\n")
    return {"table": table, "results": results, "out": str(out)}
