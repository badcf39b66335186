"""A CSV logger that keeps a run's history across ``--resume``.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts, which would erase a
resumed run's earlier metrics. This one appends instead; rows logged after the checkpoint a run
resumes from (steps that will be trained again) are dropped first, by ``trim_history``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from depthq.atomic import atomic_write
from depthq.errors import SchemaError
from depthq.evaluate.result import EvalResult


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # keep the file, and continue its header so appended rows line up
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing ``<save_dir>/metrics.csv``, appending to an existing file."""

    def __init__(self, save_dir: str | os.PathLike) -> None:
        super().__init__(os.fspath(save_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        experiment = self._experiment
        if not isinstance(experiment, ExperimentWriter):  # None until the first call
            os.makedirs(self.log_dir, exist_ok=True)
            experiment = self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return experiment


def _validation_step(line: str) -> int:
    """The step of a validation.jsonl line (an EvalResult; depthq 0.1 wrote a plain "step")."""
    values = json.loads(line)
    if "schema_version" not in values:
        return int(values["step"])
    source = EvalResult.from_dict(values, origin="validation.jsonl").source
    if source is None or source.step is None:
        raise SchemaError(f"validation.jsonl: a result without the step it measured: {line[:80]}")
    return source.step


def trim_history(run_dir: str | os.PathLike, step: int) -> None:
    """Drop what was logged after the checkpoint at ``step``: those steps will be logged again.

    Training rows carry the step count *before* their update (the first batch is step 0), so
    rows of steps >= ``step`` go; validation rows (any ``val/`` value) carry the step of the
    weights they measured, the checkpoint's own validation included, so rows of steps > ``step``
    go. validation.jsonl is trimmed like the validation rows.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)

        def keep(row: dict) -> bool:
            if not row.get("step"):
                return True
            logged = int(float(row["step"]))
            validation = any(v not in (None, "") for k, v in row.items() if k and k.startswith("val/"))
            return logged <= step if validation else logged < step

        kept = [r for r in rows if keep(r)]

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(metrics, write)
    validation = run_dir / "validation.jsonl"
    if validation.is_file():
        lines = [line for line in validation.read_text().splitlines() if line.strip()]
        kept_lines = [line for line in lines if _validation_step(line) <= step]
        atomic_write(validation, lambda tmp: Path(tmp).write_text("".join(f"{x}\n" for x in kept_lines)))
