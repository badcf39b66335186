"""The LightningModule that trains DQ-AE / VQ-VAE.

Lightning owns the loop, mixed precision, gradient clipping, DDP, checkpoints and logging;
this module adds what is specific to the model:

- non-finite or exploding updates are skipped and counted (VDVAE-style): after backward the
  gradient norm (identical on every rank once DDP has averaged the gradients) decides, and the
  optimizer's step is skipped while the step counter still advances, so data order and
  schedules stay aligned;
- validation streams the held-out split through ``depthq.evaluate.Evaluator`` and logs the three
  labelled bits/dim figures, MSE/PSNR and per-level code usage.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import Tensor

from depthq.config import RunConfig, config_from_dict
from depthq.evaluate import Evaluator, ema_prior
from depthq.models import HierarchicalAutoencoder

log = logging.getLogger(__name__)

EMA_PRIOR_NAME = "empirical prior from the quantizers' EMA counts of recent training batches"


class SkippingAdam(torch.optim.Adam):
    """Adam that drops an update when ``skip_next`` is set by the time its gradients are ready.

    Lightning runs forward and backward inside ``step(closure)`` (fp32/bf16) or before it
    (fp16 with a grad scaler); either way the closure runs first and the flag, set by
    ``DQModule.on_before_optimizer_step`` after backward, is read afterwards.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip_next = False

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.skip_next:
            self.skip_next = False
            return loss
        super().step()
        return loss


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of the learning rate: (step + 1) / warmup_steps, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


class DQModule(L.LightningModule):
    """Trains ``HierarchicalAutoencoder`` from a ``RunConfig`` (given as its plain dict)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.run_config: RunConfig = config_from_dict(config)
        self.model = HierarchicalAutoencoder(self.run_config.model)
        # counted in the checkpoint, so a resumed run keeps the total
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self.last_validation: dict | None = None
        self._evaluator: Evaluator | None = None
        self._grid: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor):
        return self.model(x)

    # -- training ------------------------------------------------------------------------------

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        out = self.model(batch)
        metrics = {"train/loss": out.loss.detach(), "train/quantizer_loss": out.quantizer_loss.detach()}
        if self.model.head.has_likelihood:
            # nats/dim of the training batch -> distortion bits/dim
            metrics["train/distortion_bpd"] = out.recon_loss.detach() / math.log(2)
        else:
            metrics["train/mse_normalised"] = out.recon_loss.detach()
        for i, level in enumerate(out.levels):
            metrics[f"train/perplexity_l{i}"] = level.perplexity.mean()
            metrics[f"train/usage_l{i}"] = level.usage.mean()
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False)
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Gradients are complete here (accumulated, DDP-averaged, unscaled for fp16). One pass
        # measures and clips them (clip_grad_norm_ returns the norm before clipping; Lightning's
        # own clipping is off so the norm is not computed twice), and decides the skip.
        params = [p for p in self.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.run_config.train.grad_clip or float("inf"))
        limit = self.run_config.train.skip_grad_norm
        skip = not bool(torch.isfinite(norm)) or (limit is not None and float(norm) > limit)
        if skip:
            self.skipped_steps += 1
            for p in params:  # no non-finite values left behind in .grad
                p.grad.zero_()
            log.warning("step %d: skipped the update (gradient norm %s)", self.global_step, float(norm))
        optimizer.skip_next = skip
        self.log_dict({"train/grad_norm": norm, "train/skipped_steps": self.skipped_steps.float(),
                       "train/lr": torch.tensor(optimizer.param_groups[0]["lr"])},
                      on_step=True, on_epoch=False)

    def configure_optimizers(self):
        train = self.run_config.train
        optimizer = SkippingAdam(self.parameters(), lr=train.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_factor(step, train.warmup_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- validation ----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._evaluator = Evaluator(self.model, prior=ema_prior(self.model), prior_name=EMA_PRIOR_NAME)
        self._grid = None

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        out = self.model(batch)
        recon = self._evaluator.update(batch, out)
        if self._grid is None:
            n = self.run_config.train.grid_images
            self._grid = (batch[:n].cpu(), recon[:n].cpu())

    def on_validation_epoch_end(self) -> None:
        if self._evaluator is None or self._evaluator.images == 0:
            return
        result = self._evaluator.result()
        result["step"] = int(self.global_step)
        self.last_validation = result
        metrics = {"val/mse": result["mse"], "val/psnr": result["psnr"]}
        bits = result["bits_per_dim"]
        if bits is not None:
            metrics.update({f"val/{k}_bpd": v for k, v in bits.items()})
        metrics["val/selection"] = bits["total_uniform"] if bits is not None else result["mse"]
        for level in result["levels"]:
            i = level["level"]
            metrics[f"val/perplexity_l{i}"] = sum(level["perplexity"]) / len(level["perplexity"])
            metrics[f"val/used_fraction_l{i}"] = sum(level["used_fraction"]) / len(level["used_fraction"])
        # every rank evaluated the same full split: the values agree, the mean leaves them as is
        self.log_dict({k: torch.tensor(float(v)) for k, v in metrics.items()}, on_epoch=True,
                      sync_dist=True)

    @property
    def validation_grid(self) -> tuple[Tensor, Tensor] | None:
        """(originals, reconstructions) of the first validation batch, uint8."""
        return self._grid
