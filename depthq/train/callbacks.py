"""The writer of an autoencoder run's folder (``RunArtifacts``); the callbacks every training
shares (RNG state, safe checkpoints, progress) are in ``depthq.runtime``."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L

from depthq.atomic import write_json
from depthq.config import RunConfig
from depthq.evaluate.result import EvalResult
from depthq.images import save_reconstructions
from depthq.io import Export, save_model
from depthq.train.summary import FILE as SUMMARY_FILE
from depthq.train.summary import TrainSummary

log = logging.getLogger(__name__)


class RunArtifacts(L.Callback):
    """The one writer of a run directory's files after ``config.yaml`` (on rank 0):

    - ``checkpoints/last.ckpt`` every ``train.checkpoint_every`` steps and at the last step,
      except at a validation step, where it is written right after the validation so that it
      holds that validation (a resumed run then tracks the best correctly);
    - at each validation: ``grids/step_XXXXXXX.png``, a line of ``validation.jsonl``, the
      validation's metrics in the loggers (at the same step), ``model.safetensors`` (+
      ``model.json``, ``config.json``); when the selection figure (``EvalResult.selection``:
      total bits/dim with the uniform prior, or MSE) improves, ``best.safetensors`` (+
      ``best.json``) and ``checkpoints/best.ckpt``;
    - at the end: ``model.safetensors`` if no validation exported the last step, and
      ``summary.json``.

    It asks Lightning to stop at the last step, which makes Lightning validate there, so the
    run ends on a validation of its final weights. Its state (best figure, last validation,
    accumulated training time) travels in the checkpoints.
    """

    def __init__(
        self, run_dir: str | os.PathLike, config: RunConfig, *, precision: str, channels_last: bool, parameters: int
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.precision, self.channels_last, self.parameters = precision, channels_last, parameters
        self.best = math.inf
        self.best_step: int | None = None
        self.last_validation: EvalResult | None = None
        self.seconds_before = 0.0  # training time of earlier sessions (from the checkpoint)
        self._started: float | None = None
        self._exported_step: int | None = None
        self._skipped_reported = 0
        self.summary: TrainSummary | None = None

    # -- what happens when -------------------------------------------------------------------

    def _validates_at(self, trainer, step: int) -> bool:
        """Whether Lightning validates after the batch that reached ``step``."""
        has_val = self.config.data.val_fraction > 0 and trainer.limit_val_batches != 0
        return has_val and (step % self.config.train.val_every == 0 or step >= trainer.max_steps)

    def seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self._started if self._started is not None else 0.0)

    # -- hooks -------------------------------------------------------------------------------

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Lightning logs training rows at its count of stepped batches, which it restores one
        # off after some checkpoints (taken at on_validation_end); every batch steps the
        # optimizer here, so that count is the global step: training rows carry the step
        # count before their update (0, 1, ...), with no repeat or gap after --resume
        loop = trainer.fit_loop.epoch_loop
        if getattr(loop, "_batches_that_stepped", None) not in (None, trainer.global_step):
            loop._batches_that_stepped = int(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step >= trainer.max_steps:
            trainer.should_stop = True  # Lightning validates when asked to stop: the last step
        if self._validates_at(trainer, step):
            return  # the checkpoint follows the validation
        if step % self.config.train.checkpoint_every == 0 or step >= trainer.max_steps:
            self._save(trainer, "last.ckpt")

    def on_validation_end(self, trainer, pl_module) -> None:
        result = pl_module.last_validation
        if trainer.sanity_checking or trainer.state.fn != "fit" or result is None:
            return
        step = int(pl_module.global_step)
        self.last_validation = result
        improved = result.selection < self.best  # the same on every rank: each saw the full split
        if improved:
            self.best, self.best_step = result.selection, step
        if trainer.is_global_zero:
            grid = pl_module.validation_grid
            if grid is not None and grid[0].shape[0]:
                originals, reconstructions = grid
                save_reconstructions(originals, reconstructions, self.run_dir / "grids" / f"step_{step:07d}.png")
            with open(self.run_dir / "validation.jsonl", "a") as f:
                f.write(json.dumps(result.to_dict()) + "\n")
            for logger in trainer.loggers:  # at the step of the weights it measured
                logger.log_metrics(result.metrics("val/"), step=step)
            self._export(pl_module, "model.safetensors", result)
            if improved:
                self._export(pl_module, "best.safetensors", result)
            self._report_skips(pl_module)
        if improved:  # collective: every rank calls, rank 0 writes
            self._save(trainer, "best.ckpt")
        self._save(trainer, "last.ckpt")

    def on_train_end(self, trainer, pl_module) -> None:
        self.finish(trainer, pl_module)

    def finish(self, trainer, pl_module) -> TrainSummary:
        """Export the last weights if no validation did and write ``summary.json`` (once)."""
        if self.summary is None:
            step = int(trainer.global_step)
            if trainer.is_global_zero and self._exported_step != step:
                last = self.last_validation
                at_step = last if last is not None and last.source is not None and last.source.step == step else None
                self._export(pl_module, "model.safetensors", at_step)
            if trainer.is_global_zero:
                self._report_skips(pl_module)
            self.summary = TrainSummary(
                run_dir=str(self.run_dir),
                steps=step,
                train_seconds=self.seconds(),
                parameters=self.parameters,
                precision=self.precision,
                channels_last=self.channels_last,
                skipped_steps=int(pl_module.skipped_steps),
                validation=self.last_validation,
                best_step=self.best_step,
            )
            if trainer.is_global_zero:
                write_json(self.run_dir / SUMMARY_FILE, self.summary.to_dict())
        return self.summary

    # -- writers -----------------------------------------------------------------------------

    def _save(self, trainer, name: str) -> None:
        trainer.save_checkpoint(self.run_dir / "checkpoints" / name, weights_only=False)

    def _export(self, pl_module, weights_name: str, validation: EvalResult | None) -> None:
        step = int(pl_module.global_step)
        export = Export(
            model=pl_module.model.config,
            run=self.config,
            step=step,
            parameters=self.parameters,
            precision=self.precision,
            channels_last=self.channels_last,
            skipped_steps=int(pl_module.skipped_steps),
            validation=validation,
        )
        save_model(pl_module.model, self.run_dir, weights_name=weights_name, export=export)
        if weights_name == "model.safetensors":
            self._exported_step = step

    def _report_skips(self, pl_module) -> None:
        skipped = int(pl_module.skipped_steps)  # read at validation and at the end, not per step
        if skipped > self._skipped_reported:
            log.warning(
                "%d update(s) skipped so far (gradient norm not finite or above "
                "train.skip_grad_norm), %d since the last report",
                skipped,
                skipped - self._skipped_reported,
            )
            self._skipped_reported = skipped

    # -- state in the checkpoints ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "train_seconds": self.seconds(),
            "last_validation": None if self.last_validation is None else self.last_validation.to_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # keys added after depthq 0.1 default to "unknown" when resuming older checkpoints
        self.best = float(state_dict["best"])
        self.best_step = state_dict.get("best_step")
        self.seconds_before = float(state_dict.get("train_seconds", 0.0))
        last = state_dict.get("last_validation")
        self.last_validation = None if last is None else EvalResult.from_dict(last, origin="the checkpoint")
