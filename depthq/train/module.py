"""The LightningModule that trains DQ-AE / VQ-VAE.

Lightning owns the loop, mixed precision, DDP and logging; this module adds what is specific
to the model:

- one pass measures and clips the gradients; an update whose gradient norm is not finite (or
  above ``train.skip_grad_norm``) is skipped and counted (VDVAE-style), while the step counter
  still advances, so data order and schedules stay aligned. The decision never leaves the
  device: ``SkippingAdam`` hands it to fused Adam as ``found_inf``, so a training step has no
  host synchronisation;
- ``train.compile`` runs the training forward through ``torch.compile``;
- validation streams the held-out split through ``depthq.evaluate.Evaluator`` (the same engine
  as ``depthq eval``) into a typed ``EvalResult``: labelled bits/dim, MSE/PSNR, and per level
  and codebook the perplexity, used fraction and effective information per position. The
  run's files (validation.jsonl, metrics, checkpoints, exports) are written from it by
  ``depthq.train.callbacks.RunArtifacts``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor

from depthq.config import RunConfig
from depthq.evaluate.evaluator import Evaluator, ema_prior
from depthq.evaluate.result import EvalOptions, EvalResult, RunSource
from depthq.models import AutoencoderOutput, HierarchicalAutoencoder
from depthq.runtime.schedule import lr_factor

log = logging.getLogger(__name__)

#: Lightning precision -> the evaluation's autocast name
EVAL_PRECISION = {"32": "32", "32-true": "32", "bf16-mixed": "bf16", "16-mixed": "16"}


class SkippingAdam(torch.optim.Adam):
    """Adam that drops an update when ``skip`` (a 0-dim bool tensor on the parameters' device)
    is set by the time its gradients are ready, without reading it on the host.

    Lightning runs forward and backward inside ``step(closure)`` (fp32/bf16) or before it
    (fp16 with a grad scaler); either way the closure runs first and ``skip``, set by
    ``DQModule.on_before_optimizer_step`` after backward, is read afterwards. It goes to fused
    Adam as ``found_inf`` (the mechanism ``GradScaler`` uses): where it is 1 the kernel leaves
    the parameters, ``exp_avg`` and ``exp_avg_sq`` untouched and the step counter is put back,
    so a skipped step is exactly a step that never happened. Under a grad scaler (16-mixed) its
    own ``found_inf`` is combined with ``skip``.

    Fused Adam runs on CPU and CUDA (torch >= 2.4). Where torch has no fused kernel for the
    parameters' device, this falls back to plain Adam and reads ``skip`` on the host once per
    step (``self.fused`` says which).
    """

    def __init__(self, params, **kwargs) -> None:
        params = list(params)
        try:
            super().__init__(params, fused=True, **kwargs)
            self.fused = True
        except RuntimeError:  # no fused kernel for this device or dtype
            super().__init__(params, **kwargs)
            self.fused = False
        self.skip: Tensor | None = None

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        skip, self.skip = self.skip, None
        if skip is None:
            super().step()
        elif not self.fused:
            if not bool(skip):  # deliberate host read: only where fused Adam is unavailable
                super().step()
        else:
            scaler_inf = getattr(self, "found_inf", None)  # set by GradScaler.step (16-mixed)
            skip = skip.float()  # exactly 0.0 or 1.0, as the fused kernel expects
            self.found_inf = skip if scaler_inf is None else torch.maximum(scaler_inf.to(skip.device), skip)
            try:
                super().step()
            finally:
                if scaler_inf is None:
                    del self.found_inf
                else:  # GradScaler deletes its own attribute after the step
                    self.found_inf = scaler_inf
        return loss

    def load_state_dict(self, state_dict) -> None:
        """Also loads the state of a plain (unfused) Adam, as checkpoints of depthq before the
        fused optimizer hold: their groups say ``fused=None`` and their step counters are CPU
        tensors, where fused Adam keeps them on the parameters' device."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["fused"] = self.fused or None
            if self.fused:
                for p in group["params"]:
                    state = self.state.get(p)
                    if state and "step" in state:
                        state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(p.device)


class DQModule(L.LightningModule):
    """Trains ``HierarchicalAutoencoder`` from a ``RunConfig``."""

    skipped_steps: Tensor  # () int64 buffer, set in __init__

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        if not isinstance(config, RunConfig):
            raise TypeError(f"expected a RunConfig, got {type(config).__name__}")
        self.save_hyperparameters({"config": config.to_dict()})
        self.run_config = config
        self.model = HierarchicalAutoencoder(config.model)
        # counted in the checkpoint, so a resumed run keeps the total
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self.last_validation: EvalResult | None = None
        self._evaluator: Evaluator | None = None
        self._grid: tuple[Tensor, Tensor] | None = None
        # the compiled training forward (train.compile), built at the first step: a function,
        # not a submodule, so the state dict and checkpoints are those of the plain model
        self._compiled_forward: Callable[[Tensor], AutoencoderOutput] | None = None

    def forward(self, x: Tensor):
        return self.model(x)

    # -- training ------------------------------------------------------------------------------

    def _train_forward(self, batch: Tensor):
        if not self.run_config.train.compile:
            return self.model(batch)
        if self._compiled_forward is None:
            if torch.get_float32_matmul_precision() != "highest":
                # the quantizers switch TF32 off around their search; a compiled graph cannot
                log.warning(
                    "train.compile with torch.set_float32_matmul_precision(%r): the compiled "
                    "nearest-code search may use reduced-precision products and pick other "
                    "codes; keep the default 'highest' to compile",
                    torch.get_float32_matmul_precision(),
                )
            self._compiled_forward = torch.compile(self.model.forward)
        return self._compiled_forward(batch)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        out = self._train_forward(batch)
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
        # Gradients are complete here (DDP-averaged, unscaled for fp16). One pass measures and
        # clips them (clip_grad_norm_ returns the norm before clipping; Lightning's own clipping
        # is off so the norm is not computed twice). The skip decision stays a device tensor:
        # no host synchronisation here. Lightning zeroes the gradients before the next backward,
        # so a skipped step's non-finite gradients go nowhere.
        if getattr(optimizer, "_step_supports_amp_scaling", False):  # fused Adam
            scaler = getattr(self.trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                # 16-mixed: Lightning leaves unscaling to a fused optimizer's step, but the norm
                # and the clipping need the true gradients (no host read: unscale_ records found_inf)
                scaler.unscale_(optimizer)
        params = [p for p in self.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.run_config.train.grad_clip or float("inf"))
        skip = ~torch.isfinite(norm)
        limit = self.run_config.train.skip_grad_norm
        if limit is not None:
            skip = skip | (norm > limit)
        self.skipped_steps += skip.to(self.skipped_steps.dtype)
        optimizer.skip = skip
        self.log_dict(
            {
                "train/grad_norm": norm,
                "train/skipped_steps": self.skipped_steps.float(),
                "train/lr": torch.tensor(optimizer.param_groups[0]["lr"]),
            },
            on_step=True,
            on_epoch=False,
        )

    def configure_optimizers(self):
        train = self.run_config.train
        optimizer = SkippingAdam(self.parameters(), lr=train.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(
                step,
                warmup_steps=train.warmup_steps,
                total_steps=train.steps,
                schedule=train.lr_schedule,
                min_ratio=train.min_lr_ratio,
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- validation ----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        options = EvalOptions(
            split="val",
            weights=None,
            prior_images=None,
            correction="none",
            diagnostics=False,
            device=str(self.device),
            precision=EVAL_PRECISION.get(str(self.trainer.precision), "32"),
            batch_size=self.run_config.data.eval_batch_size or self.run_config.data.batch_size,
        )
        self._evaluator = Evaluator(self.model, options, priors=[ema_prior(self.model)])
        self._grid = None

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        out = self.model(batch)
        if self._evaluator is None:
            raise RuntimeError("validation_step before on_validation_epoch_start (which sets up the evaluator)")
        recon = self._evaluator.update(batch, out)
        if self._grid is None:
            n = self.run_config.train.grid_images
            self._grid = (batch[:n].cpu(), recon[:n].cpu())

    def on_validation_epoch_end(self) -> None:
        if self._evaluator is None or self._evaluator.images == 0:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        data = datamodule.dataset("val").name if datamodule is not None else self.run_config.data.name
        source = RunSource(
            run_dir=None,
            weights=None,
            step=int(self.global_step),
            parameters=self.model.num_parameters(),
            quantizer=self.model.config.quantizer,
        )
        # every rank evaluated the same full split: the results agree
        self.last_validation = self._evaluator.result(data=data, source=source)
        self._evaluator = None

    def validation_postfix(self) -> dict[str, str]:
        """The last validation's figures for the progress bar."""
        val = self.last_validation
        if val is None:
            return {}
        return {
            "val " + ("bpd" if val.likelihood is not None else "mse"): f"{val.selection:.3f}",
            "val psnr": f"{val.psnr:.2f}",
        }

    @property
    def validation_grid(self) -> tuple[Tensor, Tensor] | None:
        """(originals, reconstructions) of the first validation batch, uint8."""
        return self._grid
