"""Callbacks of a depthq run: progress, run-directory artifacts, RNG state, safe checkpoints."""

from __future__ import annotations

import json
import logging
import math
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from tqdm.auto import tqdm

from depthq.images import save_reconstructions
from depthq.atomic import atomic_write
from depthq.io import save_model

log = logging.getLogger(__name__)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically and read back with ``weights_only=True``.

    The file is written under a temporary name next to the target and renamed over it, so a
    run killed mid-write keeps its previous checkpoint; loading never unpickles arbitrary
    objects (a checkpoint holds only tensors and plain values).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = True) -> dict[str, Any]:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path} not found")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class RNGState(L.Callback):
    """Saves the torch (CPU and CUDA) and Python RNG states in checkpoints and restores them.

    Code re-initialisation draws from the global torch RNG, so restoring it is what makes a
    resumed run continue exactly like an uninterrupted one. (Under DDP only rank 0's state is
    saved; the codebooks stay identical across ranks either way.)
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        version, state, gauss = random.getstate()
        checkpoint["depthq_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": [version, list(state), gauss],
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("depthq_rng")
        if rng is None:
            log.warning("checkpoint has no RNG state: the resumed run will not be bit-identical")
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))


class StepProgress(L.Callback):
    """A progress bar over optimizer steps (the training loader is infinite, so Lightning's
    own bar has no total), with the loss and the last validation figure."""

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self.bar: tqdm | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(total=trainer.max_steps, initial=trainer.global_step,
                            desc=self.description, unit="step", dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(trainer.global_step - self.bar.n)
        metrics = trainer.callback_metrics
        postfix = {}
        for key, label in (("train/loss", "loss"), ("train/distortion_bpd", "bpd"),
                           ("val/total_uniform_bpd", "val bpd"), ("val/psnr", "val psnr")):
            if key in metrics:
                postfix[label] = f"{float(metrics[key]):.3f}"
        self.bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunArtifacts(L.Callback):
    """Writes what a person looks at, and the checkpoints that follow a validation.

    At each validation (files on rank 0 only):

    - ``grids/step_XXXXXXX.png``: originals above reconstructions;
    - ``validation.jsonl``: the validation's figures, one JSON object per line;
    - ``model.safetensors`` (+ ``model.json``, ``config.json``): the latest weights; also at the end;
    - ``best.safetensors`` (+ ``best.json``) and ``checkpoints/best.ckpt`` when the selection
      figure (total bits/dim with a uniform prior, or MSE) improves;
    - ``checkpoints/last.ckpt`` again, so that a checkpoint taken at a validation step already
      holds that validation (a resumed run then tracks the best correctly).
    """

    def __init__(self, run_dir: str | os.PathLike, metadata: dict) -> None:
        self.run_dir = Path(run_dir)
        self.metadata = metadata
        self.best = math.inf
        self.final_improved = False  # set by a validation outside fit (train() saves best.ckpt)

    def _export(self, pl_module, weights_name: str) -> None:
        meta = {**self.metadata, "step": int(pl_module.global_step),
                "skipped_steps": int(pl_module.skipped_steps),
                "validation": pl_module.last_validation}
        save_model(pl_module.model, self.run_dir, weights_name=weights_name, metadata=meta)

    def on_validation_end(self, trainer, pl_module) -> None:
        result = pl_module.last_validation
        if result is None or trainer.sanity_checking:
            return
        bits = result["bits_per_dim"]
        selection = bits["total_uniform"] if bits is not None else result["mse"]
        improved = selection < self.best  # the same on every rank: each saw the full split
        if improved:
            self.best = selection
        if trainer.is_global_zero:
            step = int(pl_module.global_step)
            grid = pl_module.validation_grid
            if grid is not None and grid[0].shape[0]:
                save_reconstructions(*grid, self.run_dir / "grids" / f"step_{step:07d}.png")
            with open(self.run_dir / "validation.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
            self._export(pl_module, "model.safetensors")
            if improved:
                self._export(pl_module, "best.safetensors")
        if trainer.state.fn == "fit":  # collective: every rank calls, rank 0 writes
            if improved:
                trainer.save_checkpoint(self.run_dir / "checkpoints" / "best.ckpt", weights_only=False)
            trainer.save_checkpoint(self.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        else:
            self.final_improved = improved

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._export(pl_module, "model.safetensors")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", math.inf))
