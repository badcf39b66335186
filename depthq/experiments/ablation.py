"""``depthq experiment ablation``: sweep K and D (and M) for DQ and VQ (sec. 5.3, Fig. 5).

Every cell is a single-level model with the same network and budget; the quantizer, the
codebook size K, the code dimension D and the number of codebooks M vary. ``vq`` cells use one
codebook of K codes of dimension M*D (the same bottleneck width as DQ). Finished cells are
never run again, so an interrupted sweep continues where it stopped.

The paper's claims: the model is more sensitive to D than to K; DQ beats coupled variants in
every setting; e.g. DQ beats VQ by 35% using 25% fewer codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthq.atomic import write_json, write_text
from depthq.evaluate.figures import plt, save_figure
from depthq.experiments.common import (
    Cell,
    CellResult,
    cells_json,
    claim_folder,
    measured,
    rows_json,
    run_cells,
    single_level_config,
)
from depthq.presets import experiment_preset
from depthq.tables import markdown_table

#: the presets (quick, full, toy): depthq.presets.EXPERIMENTS["ablation"]


def cells(preset: dict, data: str, root: str | None) -> list[Cell]:
    out = []
    for quantizer in preset["quantizers"]:
        for m in preset["num_codebooks"]:
            for k in preset["codebook_sizes"]:
                for d in preset["code_dims"]:
                    config = single_level_config(
                        preset,
                        quantizer=quantizer,
                        codebook_size=k,
                        num_codebooks=m,
                        code_dim=d,
                        seed=preset["seed"],
                        data=data,
                        root=root,
                    )
                    out.append(
                        Cell(f"{quantizer}-M{m}-K{k}-D{d}", config, {"quantizer": quantizer, "M": m, "K": k, "D": d})
                    )
    return out


@dataclass(frozen=True)
class AblationRow:
    """One cell of the grid (test split)."""

    quantizer: str
    M: int
    K: int
    D: int
    code_vectors: int
    bits_per_position: float
    distortion_bpd: float
    total_uniform_bpd: float
    total_empirical_bpd: float
    psnr: float
    used_fraction: float
    information_bits: float


def summarise(results: list[CellResult]) -> list[AblationRow]:
    rows = []
    for c in results:
        model, r = c.model, c.result  # the model answers its codebooks per level and capacity
        rows.append(
            AblationRow(
                quantizer=model.quantizer,
                M=model.num_codebooks,
                K=model.codebook_sizes[0],
                D=model.code_dim,
                code_vectors=model.codebooks_per_level * model.codebook_sizes[0],
                bits_per_position=model.bits_per_position(0),
                distortion_bpd=measured(r.distortion, "distortion bits/dim"),
                total_uniform_bpd=measured(r.total("uniform"), "total bits/dim, uniform prior"),
                total_empirical_bpd=measured(r.total("empirical"), "total bits/dim, empirical prior"),
                psnr=r.psnr,
                used_fraction=r.levels[0].mean_used_fraction,
                information_bits=r.levels[0].information_bits,
            )
        )
    return rows


def format_rows(rows: list[AblationRow]) -> str:
    headers = [
        "quantizer",
        "M",
        "K",
        "D",
        "code vectors",
        "bits/position",
        "distortion bits/dim (paper convention)",
        "total bits/dim, uniform prior",
        "total bits/dim, empirical prior",
        "PSNR (dB)",
        "codes used",
        "information (bits/position)",
    ]
    cells = [
        [
            r.quantizer,
            r.M,
            r.K,
            r.D,
            f"{r.code_vectors:,}",
            f"{r.bits_per_position:g}",
            f"{r.distortion_bpd:.3f}",
            f"{r.total_uniform_bpd:.3f}",
            f"{r.total_empirical_bpd:.3f}",
            f"{r.psnr:.2f}",
            f"{r.used_fraction:.0%}",
            f"{r.information_bits:.2f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, cells)


def cell_digits(vmin: float, vmax: float) -> int:
    """Decimals that show the spread of [vmin, vmax] with two significant digits (at least two
    decimals): the colour scale spans that range, so the printed values must tell it apart
    too (a spread of 0.008 prints with four decimals, 0.6 with two)."""
    spread = vmax - vmin
    if not math.isfinite(spread) or spread <= 0:
        return 2
    return max(2, min(6, 1 - math.floor(math.log10(spread))))


def heatmap(rows: list[AblationRow], preset: dict, path: Path, key: str = "distortion_bpd") -> Path:
    """One K x D heat map of ``key`` per (quantizer, M)."""

    panels = [(q, m) for q in preset["quantizers"] for m in preset["num_codebooks"]]
    ks, ds = preset["codebook_sizes"], preset["code_dims"]
    grids = {}
    for q, m in panels:
        g = np.full((len(ks), len(ds)), np.nan)
        for r in rows:
            if r.quantizer == q and r.M == m:
                g[ks.index(r.K), ds.index(r.D)] = getattr(r, key)
        grids[(q, m)] = g
    values = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    vmin, vmax = (values.min(), values.max()) if values.size else (0, 1)
    digits = cell_digits(vmin, vmax)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.6), squeeze=False, layout="constrained")
    for ax, (q, m) in zip(axes[0], panels):
        g = grids[(q, m)]
        im = ax.imshow(g, cmap="viridis_r", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(ds)), [str(d) for d in ds])
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("D (code dimension)")
        ax.set_ylabel("K (codebook size)")
        ax.set_title(f"{q}, M={m}" if q != "vq" else f"vq (codes of M*D, M={m})", fontsize=10)
        for i in range(len(ks)):
            for j in range(len(ds)):
                if np.isfinite(g[i, j]):  # dark text on the light (low, good) end of viridis_r
                    light = (g[i, j] - vmin) < 0.5 * (vmax - vmin)
                    ax.text(
                        j,
                        i,
                        f"{g[i, j]:.{digits}f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if light else "white",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Test distortion bits/dim (paper convention; lower is better)", fontsize=11)
    return save_figure(fig, path)


@dataclass
class AblationOutcome:
    table: str
    rows: list[AblationRow]
    out: Path


def run(
    out: Path,
    *,
    preset_name: str = "quick",
    data: str = "photos",
    root: str | None = None,
    steps: int | None = None,
    codebook_sizes: list[int] | None = None,
    code_dims: list[int] | None = None,
    num_codebooks: list[int] | None = None,
    quantizers: list[str] | None = None,
) -> AblationOutcome:
    preset = experiment_preset("ablation", preset_name)
    for key, value in (
        ("steps", steps),
        ("codebook_sizes", codebook_sizes),
        ("code_dims", code_dims),
        ("num_codebooks", num_codebooks),
        ("quantizers", quantizers),
    ):
        if value:
            preset[key] = value
    all_cells = cells(preset, data, root)  # validates every config before the folder is claimed
    claim_folder(out, {"experiment": "ablation", "preset": preset_name, "data": data, "root": root, "config": preset})
    results = run_cells(all_cells, out, prior_images=preset["prior_images"])
    rows = summarise(results)
    figure = heatmap(rows, preset, out / "heatmap.png")
    table = format_rows(rows)
    write_json(
        out / "results.json",
        {
            "experiment": "ablation",
            "preset": preset_name,
            "data": data,
            "config": preset,
            "rows": rows_json(rows),
            "cells": cells_json(results),
        },
    )
    write_text(
        out / "results.md",
        f"# Ablation over K and D ({preset_name} preset, {data}, seed {preset['seed']})\n\n"
        f"Single-level network, {preset['steps']} steps per cell; test split.\n\n{table}\n\n"
        f"![heat map]({figure.name})\n",
    )
    return AblationOutcome(table, rows, out)
