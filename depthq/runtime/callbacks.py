"""Callbacks every depthq training loop uses: checkpoints written safely, RNG state, progress."""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from tqdm.auto import tqdm

from depthq.runtime.checkpoints import read_checkpoint, write_checkpoint

log = logging.getLogger(__name__)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically with a checksum, and read back with
    ``weights_only=True`` only when intact (see ``depthq.train.checkpoints``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        write_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = True) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")


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
    own bar has no total), with the loss and the last validation's figures (the module's
    ``validation_postfix()``: the autoencoder's and the learned prior's differ).

    The postfix reads the logged loss (a host synchronisation) only every ``refresh_every``
    steps.
    """

    def __init__(self, description: str = "training", refresh_every: int = 25) -> None:
        self.description, self.refresh_every = description, max(refresh_every, 1)
        self.bar: tqdm | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(
                total=trainer.max_steps,
                initial=trainer.global_step,
                desc=self.description,
                unit="step",
                dynamic_ncols=True,
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(trainer.global_step - self.bar.n)
        if trainer.global_step % self.refresh_every:
            return
        metrics = trainer.callback_metrics
        postfix = {
            label: f"{float(metrics[key]):.3f}"
            for key, label in (("train/loss", "loss"), ("train/distortion_bpd", "bpd"))
            if key in metrics
        }
        postfix.update(pl_module.validation_postfix())
        self.bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
