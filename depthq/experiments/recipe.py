"""``depthq experiment recipe``: the measured sweep behind the demo's training recipe.

The demo's network (``depthq.presets.MODELS["demo"]``: two levels, M=4 codebooks of K=64 at each,
dmol head) trained with one change at a time from the recipe of depthq 0.1, then with the
changes together, for DQ-AE and for VQ-VAE alike (one codebook of M*K codes: the same number of
code vectors), so that both quantizers get the same search effort:

- ``v0.1``: Adam 1e-3, constant after a warm-up, commitment beta 0.25, codebooks seeded by random
  training vectors;
- ``beta-M``: beta 1.0, the official code's normalisation for M = 4 (it sums each codebook's
  mean commitment where depthq averages them: an M-times larger effective beta);
- ``kmeans++``: codebooks initialised by k-means (k-means++ seeding) on the first batch;
- ``cosine``: peak learning rate 2e-3 with a cosine decay to 5% of it;
- ``all``: the three together;
- ``mse``: the v0.1 recipe with an auxiliary squared error of the expected image
  (``model.mse_weight`` 10), which trains the mean of p(x|z) as a reconstruction next to the
  likelihood;
- ``all+mse``: ``all`` with that auxiliary squared error.

Reported per cell on the held-out test split (scenes when installed, else the bundled photos):
PSNR of the mean reconstruction, distortion bits/dim, total bits/dim under the empirical prior,
the codes' rate in bits per pixel, the smallest codebook perplexity as a fraction of K (target
at least 1/8: no collapsed codebook), the smallest level's effective information per position
as a fraction of its capacity M*log2 K (target at least 1/2: no redundant codebooks), and
JPEG's PSNR at the same rate on the same images (Pillow, optimised Huffman tables, the better of
4:2:0 and 4:4:4, a quality sweep interpolated to the rate; see ``depthq.evaluate.anchors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from depthq.atomic import write_json, write_text
from depthq.config import RunConfig, config_from_dict
from depthq.errors import UsageError
from depthq.evaluate import figures
from depthq.evaluate.anchor_section import cached_anchors
from depthq.experiments.common import (
    Aggregate,
    Cell,
    CellResult,
    aggregate,
    cells_json,
    check_cells,
    claim_folder,
    group,
    measured,
    rows_json,
    run_cells,
    with_options,
)
from depthq.presets import MODELS, RECIPES, experiment_preset
from depthq.tables import markdown_table

#: the recipes of the sweep (``depthq.presets.RECIPES``), each applied to DQ-AE and VQ-VAE alike
SWEEP = ("v0.1", "beta-M", "kmeans++", "cosine", "all", "mse", "all+mse")
#: the presets (quick, full, toy): depthq.presets.EXPERIMENTS["recipe"]
QUANTIZERS = (("DQ-AE", "dq"), ("VQ-VAE", "vq"))


def recipe_config(
    variant: str,
    quantizer: str,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    data: str,
    root: str | None = None,
    model: dict | None = None,
) -> RunConfig:
    """The demo's network (``depthq.presets.MODELS["demo"]``, with ``model``'s changes) trained
    with the recipe ``variant`` (``depthq.presets.RECIPES``); a VQ-VAE gets one codebook of
    M*K codes per level, the same number of code vectors."""
    if variant not in RECIPES:
        raise UsageError(f"expected a recipe variant in {list(RECIPES)}, got {variant!r}")
    net = {**MODELS["demo"].settings(), **(model or {}), "quantizer": quantizer}
    if quantizer == "vq":  # the same number of code vectors: one codebook of M*K codes
        net["codebook_sizes"] = [k * net["num_codebooks"] for k in net["codebook_sizes"]]
    train = {
        "steps": steps,
        "warmup_steps": min(100, steps // 10),
        "seed": seed,
        "val_every": steps,
        "checkpoint_every": max(steps // 4, 1),
    }
    return config_from_dict(
        {
            "recipe": variant,
            "model": net,
            "data": {
                "name": data,
                "root": root,
                "batch_size": batch_size,
                "val_fraction": 0.05,
                "max_val_images": 256,
            },
            "train": train,
        }
    )


def cells(preset: dict, data: str, root: str | None, variants: list[str]) -> list[Cell]:
    out = []
    for variant in variants:
        for label, quantizer in QUANTIZERS:
            for seed in preset["seeds"]:
                config = recipe_config(
                    variant,
                    quantizer,
                    steps=preset["steps"],
                    batch_size=preset["batch_size"],
                    seed=seed,
                    data=data,
                    root=root,
                    model=preset.get("model"),
                )
                slug = variant.lower().replace("++", "pp").replace("+", "-").replace(".", "")
                out.append(
                    Cell(f"{quantizer}-{slug}-seed{seed}", config, {"variant": variant, "model": label, "seed": seed})
                )
    return out


@dataclass(frozen=True)
class RecipeRow:
    """One (variant, quantizer) of the table, over seeds (test split)."""

    variant: str
    model: str
    seeds: tuple[int, ...]
    psnr: Aggregate
    distortion_bpd: Aggregate
    total_empirical_bpd: Aggregate
    rate_bpp: Aggregate
    """The codes' rate under the empirical prior, bits per pixel."""
    min_perplexity_fraction: Aggregate
    """Smallest test perplexity over every codebook of every level, as a fraction of its K."""
    min_information_fraction: Aggregate
    """Smallest effective information per position over the levels, as a fraction of capacity."""
    jpeg_psnr: Aggregate | None
    """JPEG (4:2:0) PSNR at ``rate_bpp`` on the same images; None when not measured."""


def summarise(results: list[CellResult], jpeg=None) -> list[RecipeRow]:
    """Rows by (variant, model); ``jpeg(bpp) -> dB`` gives the anchor column when given."""
    rows = []
    for (variant, model), cs in group(results, lambda c: (c.cell.labels["variant"], c.cell.labels["model"])).items():
        rates = [_bpp(c) for c in cs]
        rows.append(
            RecipeRow(
                variant=variant,
                model=model,
                seeds=tuple(c.cell.config.train.seed for c in cs),
                psnr=aggregate([c.result.psnr for c in cs]),
                distortion_bpd=aggregate([measured(c.result.distortion, "distortion bits/dim") for c in cs]),
                total_empirical_bpd=aggregate([c.result.total("empirical") or math.nan for c in cs]),
                rate_bpp=aggregate(rates),
                min_perplexity_fraction=aggregate([c.result.min_perplexity_fraction for c in cs]),
                min_information_fraction=aggregate([c.result.min_information_fraction for c in cs]),
                jpeg_psnr=None if jpeg is None else aggregate([jpeg(r) for r in rates]),
            )
        )
    return rows


def _bpp(cell: CellResult) -> float:
    return cell.result.code_rate_bpp(cell.model.image_channels)


def format_rows(rows: list[RecipeRow]) -> str:
    headers = [
        "recipe",
        "model",
        "test PSNR (dB)",
        "JPEG PSNR at the same rate (dB)",
        "code rate, bits/pixel (empirical prior)",
        "distortion bits/dim",
        "total bits/dim, empirical prior",
        "smallest perplexity / K",
        "smallest information / capacity",
    ]
    cells = [
        [
            r.variant,
            r.model,
            r.psnr.format(2),
            "n/a" if r.jpeg_psnr is None else r.jpeg_psnr.format(2),
            r.rate_bpp.format(3),
            r.distortion_bpd.format(3),
            r.total_empirical_bpd.format(3),
            r.min_perplexity_fraction.format(3),
            r.min_information_fraction.format(3),
        ]
        for r in rows
    ]
    return markdown_table(headers, cells)


@dataclass
class RecipeOutcome:
    table: str
    rows: list[RecipeRow]
    out: Path


def _anchors(results: list[CellResult]):
    """The test images' codec anchors (cached; see ``depthq.evaluate.anchor_section``)."""

    images = results[0].cell.config.datamodule().dataset("test").images
    return cached_anchors(images)[0]


def _not_extrapolated(value) -> float:
    """An anchor read at a rate, or NaN ("n/a" in the table) outside the measured sweep."""
    return math.nan if value.extrapolated else value.value


def _figure(results: list[CellResult], anchors, out: Path) -> Path:
    """PSNR against code rate for every cell, over JPEG's and WebP's curves on the same images."""

    curves = [
        (c.codec, [(p.bits_per_pixel, p.psnr) for p in c.frontier()])
        for c in anchors.curves
        if c.codec in ("JPEG 4:2:0", "JPEG", "WebP")
    ]
    curves = [(name, [(x, y) for x, y in curve if x <= 3.0]) for name, curve in curves]
    points = [
        (f"{c.cell.labels['model'].split('-')[0]} {c.cell.labels['variant']}", _bpp(c), c.result.psnr)
        for c in results
        if c.cell.config.train.seed == results[0].cell.config.train.seed
    ]
    return figures.rate_distortion(
        points,
        curves,
        out / "rate_distortion.png",
        title="Recipe variants: test PSNR against the codes' rate, with JPEG and WebP",
    )


def run(
    out: Path,
    *,
    preset_name: str = "quick",
    data: str = "scenes",
    root: str | None = None,
    seeds: list[int] | None = None,
    steps: int | None = None,
    variants: list[str] | None = None,
) -> RecipeOutcome:
    preset = with_options(experiment_preset("recipe", preset_name), seeds=seeds, steps=steps)
    variants = list(variants or SWEEP)
    for variant in variants:
        if variant not in RECIPES:
            raise UsageError(f"expected recipes among {list(RECIPES)}, got {variant!r}")
    all_cells = cells(preset, data, root, variants)
    check_cells(all_cells)  # every config and data set checked before the folder is claimed
    claim_folder(
        out,
        {
            "experiment": "recipe",
            "preset": preset_name,
            "data": data,
            "root": root,
            "config": preset,
            "variants": variants,
        },
    )
    results = run_cells(all_cells, out, prior_images=preset["prior_images"])
    anchors = _anchors(results)
    rows = summarise(results, lambda bpp: _not_extrapolated(anchors.best_psnr_at(bpp, "JPEG")[1]))
    table = format_rows(rows)
    figure = _figure(results, anchors, out)
    write_json(
        out / "results.json",
        {
            "experiment": "recipe",
            "preset": preset_name,
            "data": data,
            "config": preset,
            "variants": {v: RECIPES[v].settings() for v in variants},
            "rows": rows_json(rows),
            "cells": cells_json(results),
        },
    )
    write_text(
        out / "results.md",
        f"# Training recipe ({preset_name} preset, {data}, seeds {preset['seeds']})\n\n"
        f"The demo's network, {preset['steps']} steps at batch {preset['batch_size']} per cell; the test "
        f"split; mean ± std over seeds where there are several. Information: the joint entropy of a "
        f"position's codes (plug-in estimator), over M*log2 K.\n\n{table}\n\nVariants: "
        + "; ".join(f"{v}: {RECIPES[v].description}" for v in variants)
        + f"\n\n![rate-distortion]({figure.name})\n",
    )
    return RecipeOutcome(table, rows, out)
