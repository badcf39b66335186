"""``depthq experiment decoupling``: implicit decoupling, single-level DQ-AE versus VQ-VAE (sec. 5.2).

The same single-level network, data, budget and seeds for every variant; only the quantizer
differs. DQ spends M*log2 K bits per position where VQ spends log2 K, so VQ is compared both
at DQ's cost and at DQ's rate:

- ``DQ``: M codebooks of K codes (M*K code vectors, M*log2 K bits per position);
- ``VQ, equal code vectors``: one codebook of M*K codes (log2(M*K) bits per position);
- ``VQ, equal rate``: one codebook of K^M codes (M*log2 K bits per position);
- ``coupled``: the official baseline, M codebooks of K codes on one shared projection.

Reported per variant, mean ± std over seeds, on the held-out test split: distortion and total
bits/dim (priors named), PSNR, code entropy, mean off-diagonal mutual information between
codebooks, code usage. The paper (CIFAR-10): DQ-AE 3.14 vs VQ-VAE 4.36 bits/dim (28% lower);
DQ codes have higher entropy and lower pairwise MI.
"""

from __future__ import annotations

import math
from pathlib import Path

from depthq.evaluate import figures
from depthq.evaluate.report import mean_of
from depthq.experiments.common import (
    Cell,
    aggregate,
    fmt,
    group,
    run_cells,
    single_level_config,
)
from depthq.atomic import write_json
from depthq.tables import markdown_table

PRESETS = {
    # about 10 minutes on 2 CPU cores: 4 variants x 2 seeds
    "quick": {"model": {"channels": 64, "res_channels": 32, "res_blocks": 1, "coder_blocks": 2},
              "num_codebooks": 4, "codebook_size": 8, "code_dim": 16, "steps": 600, "seeds": [0, 1],
              "batch_size": 32, "lr": 1e-3, "prior_images": 2048},
    # one GPU: the official network at a single level
    "full": {"model": {"channels": 256, "res_channels": 256, "res_blocks": 3, "coder_blocks": 2},
             "num_codebooks": 4, "codebook_size": 16, "code_dim": 64, "steps": 20000, "seeds": [0, 1, 2],
             "batch_size": 128, "lr": 2e-4, "prior_images": 8192},
}
PRESETS["toy"] = {  # seconds: for tests
    "model": {"channels": 16, "res_channels": 8, "res_blocks": 1, "coder_blocks": 1},
    "num_codebooks": 2, "codebook_size": 4, "code_dim": 4, "steps": 2, "seeds": [0, 1],
    "batch_size": 8, "lr": 1e-3, "prior_images": 32}
MAX_VQ_CODES = 2**16  # the equal-rate VQ is left out above this many codes


def variants(m: int, k: int) -> list[tuple[str, str, int]]:
    """(name, quantizer, codebook size) of each variant."""
    out = [("DQ", "dq", k), ("VQ, equal code vectors", "vq", m * k)]
    if k**m <= MAX_VQ_CODES:
        out.append(("VQ, equal rate", "vq", k**m))
    out.append(("coupled", "coupled", k))
    return out


def cells(preset: dict, data: str, root: str | None) -> list[Cell]:
    m, k, d = preset["num_codebooks"], preset["codebook_size"], preset["code_dim"]
    out = []
    for name, quantizer, size in variants(m, k):
        for seed in preset["seeds"]:
            config = single_level_config(preset, quantizer=quantizer, codebook_size=size, num_codebooks=m,
                                         code_dim=d, seed=seed, data=data, root=root)
            slug = name.lower().replace(", ", "-").replace(" ", "-")
            out.append(Cell(f"{slug}-seed{seed}", config, {"variant": name, "seed": seed,
                                                           "quantizer": quantizer, "codebook_size": size}))
    return out


def summarise(results: list[dict], m: int) -> list[dict]:
    rows = []
    for variant, rs in group(results, lambda r: r["cell_labels"]["variant"]).items():
        lv = [r["levels"][0] for r in rs]
        k = rs[0]["cell_labels"]["codebook_size"]
        codebooks = len(lv[0]["entropy_nats"])
        rows.append({
            "variant": variant, "quantizer": rs[0]["cell_labels"]["quantizer"], "codebook_size": k,
            "code_vectors": codebooks * k,
            "bits_per_position": (m if rs[0]["cell_labels"]["quantizer"] != "vq" else 1) * math.log2(k),
            "seeds": [r["cell_labels"]["seed"] for r in rs],
            "distortion_bpd": aggregate([r["bits_per_dim"]["distortion"] for r in rs]),
            "total_uniform_bpd": aggregate([r["bits_per_dim"]["total_uniform"] for r in rs]),
            "total_empirical_bpd": aggregate([r["bits_per_dim"]["total_empirical"] for r in rs]),
            "psnr": aggregate([r["psnr"] for r in rs]),
            "entropy_nats": aggregate([mean_of(x["entropy_nats"]) for x in lv]),
            "position_entropy_nats": aggregate([x["mean_position_entropy_nats"] for x in lv]),
            "mean_offdiagonal_mi_nats": (aggregate([x["mean_offdiagonal_mi_nats"] for x in lv])
                                         if "mean_offdiagonal_mi_nats" in lv[0] else None),
            "used_fraction": aggregate([mean_of(x["used_fraction"]) for x in lv]),
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    headers = ["variant", "code vectors", "bits/position", "distortion bits/dim (paper convention)",
               "total bits/dim, uniform prior", "total bits/dim, empirical prior", "PSNR (dB)",
               "entropy (nats/codebook)", "entropy map mean (nats/pixel)", "mean off-diag. MI (nats)",
               "codes used"]
    cells = []
    for r in rows:
        mi = fmt(r["mean_offdiagonal_mi_nats"], 4) if r["mean_offdiagonal_mi_nats"] else "n/a (M=1)"
        cells.append([
            r["variant"], f"{r['code_vectors']:,}", f"{r['bits_per_position']:g}", fmt(r["distortion_bpd"]),
            fmt(r["total_uniform_bpd"]), fmt(r["total_empirical_bpd"]), fmt(r["psnr"], 2),
            fmt(r["entropy_nats"], 2), fmt(r["position_entropy_nats"], 2), mi,
            f"{r['used_fraction']['mean']:.0%}"])
    return markdown_table(headers, cells)


def run(out: Path, *, preset_name: str = "quick", data: str = "photos", root: str | None = None,
        seeds: list[int] | None = None, steps: int | None = None) -> dict:
    preset = dict(PRESETS[preset_name])
    if seeds:
        preset["seeds"] = seeds
    if steps:
        preset["steps"] = steps
    all_cells = cells(preset, data, root)
    results = run_cells(all_cells, out, prior_images=preset["prior_images"])
    rows = summarise(results, preset["num_codebooks"])
    seed0 = {r["cell_labels"]["variant"]: r for r in results if r["cell_labels"]["seed"] == preset["seeds"][0]}
    # one-codebook variants have no pairs: only DQ and coupled have an MI matrix
    panels = [(name, r["levels"][0]["mutual_information_nats"]) for name, r in seed0.items()
              if "mutual_information_nats" in r["levels"][0]]
    import numpy as np

    figure = figures.mi_matrices([(n, np.array(m) if m is not None else None) for n, m in panels],
                                 out / "mutual_information.png",
                                 title=f"Mutual information between codebooks, seed {preset['seeds'][0]} (nats)")
    table = format_rows(rows)
    payload = {"experiment": "decoupling", "preset": preset_name, "data": data, "config": preset,
               "rows": rows, "cells": {r["cell"]: r for r in results}}
    write_json(out / "results.json", payload)
    (out / "results.md").write_text(
        f"# Implicit decoupling ({preset_name} preset, {data}, seeds {preset['seeds']})\n\n"
        f"Single-level network, M={preset['num_codebooks']}, K={preset['codebook_size']}, "
        f"D={preset['code_dim']}, {preset['steps']} steps per run; mean ± std over seeds on the test split.\n\n"
        f"{table}\n\n![MI]({figure.name})\n\nPaper (CIFAR-10): DQ-AE 3.14 vs VQ-VAE 4.36 bits/dim.\n")
    return {"table": table, "rows": rows, "out": str(out)}
