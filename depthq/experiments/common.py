"""Running an experiment as a set of cells: one training run + one evaluation each, resumable.

An experiment folder holds ``experiment.json`` (the experiment's settings), ``cells/<name>/``
(a run directory with its ``eval-test/eval.json``) for every cell, and the experiment's
``results.json``, ``results.md`` and figures. A cell whose eval.json exists is not run again; a
cell interrupted mid-training resumes from its last checkpoint; so re-running the same command
after a crash finishes only what is missing. A folder made with other settings is refused
before anything runs (changed settings get their own folder by default, see
``depthq.experiments.cli``).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from depthq.atomic import write_json
from depthq.config import RunConfig, config_from_dict, dump_config, load_config
from depthq.data.registry import dataset_info
from depthq.errors import DataError, DepthqError, RunDirError, UsageError
from depthq.evaluate.result import EvalOptions, EvalResult
from depthq.presets import RECOMMENDED
from depthq.runs import read_eval, write_eval
from depthq.train import train
from depthq.train.summary import TrainSummary

SETTINGS = "experiment.json"


@dataclass
class Cell:
    """One run of an experiment: a name, a config, and labels used to group the results."""

    name: str
    config: RunConfig
    labels: dict = field(default_factory=dict)


@dataclass
class CellResult:
    """A finished cell: its definition, its test evaluation and its training time."""

    cell: Cell
    result: EvalResult
    train_seconds: float

    @property
    def model(self):
        """The cell's ``ModelConfig`` (it answers codebooks_per_level, bits_per_position)."""
        return self.cell.config.model


def single_level_config(
    preset: dict,
    *,
    quantizer: str,
    codebook_size: int,
    num_codebooks: int,
    code_dim: int,
    seed: int,
    data: str,
    root: str | None,
) -> RunConfig:
    """The run config of one experiment cell: a single-level dmol model from ``preset``, trained
    with the recommended recipe (``depthq.presets.RECOMMENDED``) at the preset's peak learning
    rate (sized for its network and batch).

    ``preset`` holds ``model`` (network fields), ``steps``, ``lr`` and ``batch_size``.
    """
    steps = preset["steps"]
    try:  # the images' channels and size come from the data set (Fashion-MNIST: 1 x 28 x 28)
        info = dataset_info(data)
        image = {"image_channels": info.channels, "image_size": info.default_size}
    except ValueError as err:
        raise UsageError(str(err)) from None
    return config_from_dict(
        {
            "recipe": RECOMMENDED,
            "model": {
                **preset["model"],
                **image,
                "stride": 2,
                "codebook_sizes": [codebook_size],
                "num_codebooks": num_codebooks,
                "code_dim": code_dim,
                "quantizer": quantizer,
                "head": "dmol",
            },
            "data": {
                "name": data,
                "root": root,
                "batch_size": preset["batch_size"],
                "val_fraction": 0.05,
                "max_val_images": 256,
            },
            "train": {
                "steps": steps,
                "lr": preset["lr"],
                "warmup_steps": min(100, steps // 10),
                "seed": seed,
                "val_every": steps,
                "checkpoint_every": max(steps // 4, 1),
            },
        }
    )


def with_options(preset: dict, *, seeds: Sequence[int] | None = None, steps: int | None = None) -> dict:
    """A copy of ``preset`` with the command line's seeds (duplicates dropped) and steps."""
    preset = dict(preset)
    if seeds is not None:
        seeds = list(dict.fromkeys(seeds))
        if not seeds or any(s < 0 for s in seeds):
            raise UsageError(f"--seeds must be one or more seeds >= 0, got {seeds}")
        preset["seeds"] = seeds
    if steps is not None:
        if steps < 1:
            raise UsageError(f"--steps must be >= 1, got {steps}")
        preset["steps"] = steps
    return preset


def check_cells(cells: Sequence[Cell]) -> None:
    """Before anything is written: unique cell names, and every cell's data set fits its model
    (``RunConfig.datamodule`` checks channels and image size without reading the images)."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise UsageError(f"cell names must be unique, got {names}")
    for cell in cells:
        try:
            cell.config.datamodule()
        except ValueError as err:
            if isinstance(err, DepthqError):
                raise
            raise UsageError(f"{cell.name}: {err}") from err


def claim_folder(root: Path, settings: dict[str, Any]) -> None:
    """Record the experiment's ``settings`` in ``root``, or refuse a folder made with others."""
    path = root / SETTINGS
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise RunDirError(
                f"{root} holds this experiment run with other settings ("
                + "; ".join(f"{k}: {previous.get(k)!r} there, {settings.get(k)!r} now" for k in changed)
                + "): pass another --out, or remove that folder to redo it"
            )
    elif (root / "cells").is_dir():
        raise RunDirError(
            f"{root} holds cells of an experiment without its {SETTINGS}: pass another --out, or remove that folder"
        )
    write_json(path, settings)


def run_cell(cell: Cell, root: Path, *, prior_images: int, progress: bool) -> CellResult:
    """Train and evaluate one cell (or reuse what is already there)."""
    run_dir = root / "cells" / cell.name
    saved = run_dir / "config.yaml"
    if saved.is_file() and dump_config(load_config(saved, default_recipe=None)) != dump_config(cell.config):
        raise RunDirError(
            f"{run_dir} holds a run with another configuration (the preset or the "
            "options changed): use another --out, or remove that folder to redo it"
        )
    done = run_dir / "eval-test" / "eval.json"
    if not done.is_file():
        if not (run_dir / "summary.json").is_file():
            if (run_dir / "checkpoints" / "last.ckpt").is_file():  # interrupted mid-training: continue it
                train(cell.config, run_dir, resume=True, description=cell.name)
            else:
                if run_dir.exists():  # started but no checkpoint yet: nothing worth keeping
                    shutil.rmtree(run_dir)
                train(cell.config, run_dir, description=cell.name)
        write_eval(run_dir, EvalOptions(prior_images=prior_images), progress=progress)  # eval.json last, atomic
    return CellResult(cell, read_eval(done), TrainSummary.read(run_dir).train_seconds)


def run_cells(
    cells: Sequence[Cell], root: Path, *, prior_images: int = 4096, progress: bool = True
) -> list[CellResult]:
    """Run every cell in order, printing where the experiment stands."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise DataError(f"cell names must be unique, got {names}")
    results = []
    for i, cell in enumerate(cells, 1):
        state = "done, reused" if (root / "cells" / cell.name / "eval-test" / "eval.json").is_file() else "running"
        print(f"[{i}/{len(cells)}] {cell.name} ({state})", flush=True)
        results.append(run_cell(cell, root, prior_images=prior_images, progress=progress))
    return results


@dataclass(frozen=True)
class Aggregate:
    """Mean and (sample) standard deviation of a figure over seeds."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    def format(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"

    def overlaps(self, other: Aggregate) -> bool:
        """Whether the ranges of the two sets of values overlap."""
        return max(self.values) >= min(other.values) and max(other.values) >= min(self.values)


def measured(value: float | None, what: str) -> float:
    """A figure every cell of these experiments has: they train likelihood heads (bits/dim) and
    fit an empirical prior; ValueError naming the figure when a result lacks it."""
    if value is None:
        raise ValueError(f"the cell's evaluation has no {what} (a likelihood head and prior_images > 0 give it)")
    return value


def aggregate(values: Sequence[float]) -> Aggregate:
    values = tuple(float(v) for v in values)
    return Aggregate(
        statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values), values
    )


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group(items: Sequence[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """Items grouped by ``key(item)``, in first-seen order."""
    out: dict = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def cells_json(results: Sequence[CellResult]) -> dict[str, Any]:
    """The cells of ``results.json``: labels, training time and the full evaluation of each."""
    return {
        c.cell.name: {"labels": c.cell.labels, "train_seconds": c.train_seconds, "eval": c.result.to_dict()}
        for c in results
    }


def rows_json(rows: Sequence[Any]) -> list[dict]:
    return [asdict(r) for r in rows]
