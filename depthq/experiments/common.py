"""Running an experiment as a set of cells: one training run + one evaluation each, resumable.

An experiment folder holds ``cells/<name>/`` (a run directory with its ``eval-test/eval.json``)
for every cell, and the experiment's ``results.json``, ``results.md`` and figures. A cell whose
eval.json exists is not run again; a cell interrupted mid-training resumes from its last
checkpoint; so re-running the same command after a crash finishes only what is missing.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from depthq.config import RunConfig, config_from_dict, dump_config, load_config
from depthq.evaluate.report import write_eval
from depthq.atomic import write_json

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """One run of an experiment: a name, a config, and labels used to group the results."""

    name: str
    config: RunConfig
    labels: dict = field(default_factory=dict)


def single_level_config(preset: dict, *, quantizer: str, codebook_size: int, num_codebooks: int,
                        code_dim: int, seed: int, data: str, root: str | None) -> RunConfig:
    """The run config of one experiment cell: a single-level dmol model from ``preset``.

    ``preset`` holds ``model`` (network fields), ``steps``, ``lr`` and ``batch_size``.
    """
    steps = preset["steps"]
    return config_from_dict({
        "model": {**preset["model"], "stride": 2, "codebook_sizes": [codebook_size], "num_codebooks": num_codebooks,
                  "code_dim": code_dim, "quantizer": quantizer, "head": "dmol"},
        "data": {"name": data, "root": root, "batch_size": preset["batch_size"], "val_fraction": 0.05,
                 "max_val_images": 256},
        "train": {"steps": steps, "lr": preset["lr"], "warmup_steps": min(100, steps // 10), "seed": seed,
                  "val_every": steps, "checkpoint_every": max(steps // 4, 1)},
    })


def run_cell(cell: Cell, root: Path, *, prior_images: int, progress: bool) -> dict:
    """Train and evaluate one cell (or reuse what is already there)."""
    from depthq.train import train

    run_dir = root / "cells" / cell.name
    saved = run_dir / "config.yaml"
    if saved.is_file() and dump_config(load_config(saved)) != dump_config(cell.config):
        raise ValueError(f"{run_dir} holds a run with another configuration (the preset or the "
                         "options changed): use another --out, or remove that folder to redo it")
    done = run_dir / "eval-test" / "eval.json"
    if done.is_file():
        result = json.loads(done.read_text())
        result.setdefault("cell_labels", cell.labels)
        return result
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        if checkpoint.is_file():  # interrupted mid-training: continue it
            train(cell.config, run_dir, resume=True, description=cell.name)
        else:
            if run_dir.exists():  # started but no checkpoint yet: nothing worth keeping
                shutil.rmtree(run_dir)
            train(cell.config, run_dir, description=cell.name)
    summary = json.loads(summary_file.read_text())
    result = write_eval(run_dir, prior_images=prior_images, progress=progress)
    result["train_seconds"] = summary["train_seconds"]
    result["cell_labels"] = cell.labels  # "labels" names the bits/dim figures
    write_json(done, result)  # atomic: a crash here never leaves a truncated eval.json
    return result


def run_cells(cells: Sequence[Cell], root: Path, *, prior_images: int = 4096,
              progress: bool = True) -> list[dict]:
    """Run every cell in order, printing where the experiment stands."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"cell names must be unique, got {names}")
    results = []
    for i, cell in enumerate(cells, 1):
        state = "done, reused" if (root / "cells" / cell.name / "eval-test" / "eval.json").is_file() else "running"
        print(f"[{i}/{len(cells)}] {cell.name} ({state})", flush=True)
        result = run_cell(cell, root, prior_images=prior_images, progress=progress)
        result["cell"] = cell.name
        results.append(result)
    return results


def aggregate(values: Sequence[float]) -> dict:
    """Mean and (sample) standard deviation over seeds."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def fmt(agg: dict, digits: int = 3) -> str:
    return f"{agg['mean']:.{digits}f} ± {agg['std']:.{digits}f}" if agg["n"] > 1 else f"{agg['mean']:.{digits}f}"


def group(results: Sequence[dict], key: Callable[[dict], object]) -> dict:
    """Results grouped by ``key(result)``, in first-seen order."""
    out: dict = {}
    for r in results:
        out.setdefault(key(r), []).append(r)
    return out

