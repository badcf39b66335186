"""``summary.json``: what a finished training run reports, as a typed object."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from depthq.errors import CorruptFileError, MissingFileError
from depthq.evaluate.result import EvalResult

SCHEMA = "depthq.train-summary"
SCHEMA_VERSION = 1
FILE = "summary.json"


@dataclass(frozen=True)
class TrainSummary:
    """A run's final state: steps, time, size, and its last and best validations."""

    run_dir: str
    steps: int
    train_seconds: float
    """Wall time of training and validation, accumulated over every --resume."""
    parameters: int
    precision: str
    channels_last: bool
    skipped_steps: int
    validation: EvalResult | None
    """The validation at the last step (None without a val split)."""
    best_step: int | None = None
    """The step of best.safetensors / best.ckpt (the lowest ``EvalResult.selection``)."""

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_dir": self.run_dir,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "parameters": self.parameters,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "skipped_steps": self.skipped_steps,
            "best_step": self.best_step,
            "validation": None if self.validation is None else self.validation.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict, origin: str = "summary") -> TrainSummary:
        if values.get("schema") != SCHEMA or values.get("schema_version") != SCHEMA_VERSION:
            raise CorruptFileError(
                f"{origin} is not a depthq training summary of schema {SCHEMA_VERSION} (written by another version?)"
            )
        try:
            validation = values["validation"]
            return cls(
                run_dir=values["run_dir"],
                steps=values["steps"],
                train_seconds=values["train_seconds"],
                parameters=values["parameters"],
                precision=values["precision"],
                channels_last=values["channels_last"],
                skipped_steps=values["skipped_steps"],
                best_step=values["best_step"],
                validation=None if validation is None else EvalResult.from_dict(validation, origin=origin),
            )
        except KeyError as err:
            raise CorruptFileError(f"{origin} has no {err.args[0]!r} field") from None

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> TrainSummary:
        path = Path(run_dir) / FILE
        if not path.is_file():
            raise MissingFileError(f"{path} not found: the run has not finished")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CorruptFileError(f"{path} is not valid JSON ({err})") from err
        return cls.from_dict(values, origin=str(path))

    def format(self) -> str:
        """A few readable lines about the run (what ``depthq train`` prints at the end)."""
        skipped = f", skipped {self.skipped_steps} updates" if self.skipped_steps else ""
        lines = [
            f"run: {self.run_dir}  ({self.steps} steps in {self.train_seconds:.0f} s, "
            f"{self.parameters:,} parameters, {self.precision}{skipped})"
        ]
        val = self.validation
        if val is not None:
            figures = ", ".join(f"{f.label} {f.bits_per_dim:.3f}" for f in val.figures if not f.key.startswith("rate_"))
            if figures:
                lines.append(f"validation ({val.images} images): {figures}")
            lines.append(
                f"validation MSE {val.mse:.2f}, PSNR {val.psnr:.2f} dB; information per "
                "position (bits of capacity): "
                + " / ".join(f"level {lv.level} {lv.information_bits:.1f} of {lv.capacity_bits:g}" for lv in val.levels)
            )
        lines.append(f"load it with: depthq.load({json.dumps(self.run_dir)})")
        return "\n".join(lines)
