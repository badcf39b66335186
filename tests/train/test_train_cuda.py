"""Training and evaluation on a CUDA GPU (``pytest -m cuda``; skipped without CUDA).

CI is CPU-only; benchmarks/gpu.sh runs these on a lent GPU. A tiny ``depthq train`` in bf16-mixed
with ``train.compile`` (inductor), batches gathered on the GPU, no host synchronisation by depthq
during training steps, an fp32 GPU run that matches the CPU run, and ``depthq eval`` on the GPU
against the CPU.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

import lightning as L
import pytest
import torch

import depthq
from depthq.cli import main as cli_main
from depthq.config import load_config
from depthq.evaluate.result import EvalResult
from depthq.train import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = ["model.preset=tiny", "data.batch_size=16", "data.max_val_images=64", "train.log_every=2",
        "train.progress=false", "train.val_every=100", "train.checkpoint_every=100"]
TORCH_DIR = os.path.dirname(torch.__file__)
DEPTHQ_DIR = os.path.dirname(depthq.__file__)


def figures(result: EvalResult) -> dict[str, float]:
    return {f.key: f.bits_per_dim for f in result.figures}


class SyncProbe(L.Callback):
    """Records, for the training steps from ``first`` on, where each synchronising CUDA call was
    made: the innermost frame outside torch (``torch.cuda.set_sync_debug_mode("warn")``)."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.syncs: list[str] = []
        self._show = None

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        # called synchronously by the warning: the stack is that of the synchronising call
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith(TORCH_DIR)
                                     or frame.f_code.co_filename == warnings.__file__):
            frame = frame.f_back
        if "synchroniz" in str(message).lower():
            self.syncs.append(f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "?")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.first:
            self._show, warnings.showwarning = warnings.showwarning, self._record
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._show is not None:
            torch.cuda.set_sync_debug_mode(0)
            warnings.showwarning, self._show = self._show, None


def test_bf16_compiled_training_on_the_gpu_has_no_host_sync_in_depthq(tmp_path):
    config = load_config(None, [*TINY, "train.steps=8", "train.accelerator=gpu", "train.precision=bf16-mixed",
                                "train.compile=true", "train.skip_grad_norm=1e6", "model.kmeans_init=true",
                                "data.augment_flip=true", "data.augment_crop=2"])
    probe = SyncProbe(first=3)  # k-means initialisation and compilation happen before
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        summary = train(config, tmp_path / "run", callbacks=[probe])
    assert summary.steps == 8 and summary.skipped_steps == 0 and summary.precision == "bf16-mixed"
    bits = figures(summary.validation)
    assert all(math.isfinite(v) for v in bits.values()) and 0 < bits["total_uniform"] < 16
    ours = [s for s in probe.syncs if s.startswith(DEPTHQ_DIR)]
    assert not ours, f"depthq synchronised the GPU during training steps at {sorted(set(ours))}"
    print(f"synchronisations outside depthq during steps 3-7: {sorted(set(probe.syncs))}")


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 on the GPU as on the CPU: no TF32 convolutions or matrix products."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_fp32_training_on_the_gpu_matches_the_cpu(tmp_path, no_tf32):
    # no dead-code re-initialisation: its random draws come from different generators per device
    common = [*TINY, "train.steps=4", "train.precision=32", "model.dead_code_threshold=0"]
    summaries = {}
    for accelerator in ("cpu", "gpu"):
        config = load_config(None, [*common, f"train.accelerator={accelerator}"])
        summaries[accelerator] = train(config, tmp_path / accelerator)
    cpu, gpu = (figures(summaries[a].validation) for a in ("cpu", "gpu"))
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=2e-3, abs=1e-3), key
    # the trained weights (the EMA codebooks may differ where an assignment was a near tie)
    a = dict(depthq.load(tmp_path / "cpu").named_parameters())
    b = dict(depthq.load(tmp_path / "gpu").named_parameters())
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-3, atol=1e-4, msg=name)


def test_depthq_eval_on_the_gpu_agrees_with_the_cpu(tmp_path, no_tf32):
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "train.steps=3", "train.accelerator=cpu", "train.precision=32"]), run)
    results = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"eval-{device}"
        assert cli_main(["eval", str(run), "--device", device, "--out", str(out), "--prior-images", "256",
                         "--split", "val", "--batch-size", "32"]) == 0
        results[device] = EvalResult.from_dict(json.loads((out / "eval.json").read_text()), origin=device)
    cpu, gpu = results["cpu"], results["cuda"]
    assert cpu.images == gpu.images
    for key, value in figures(cpu).items():
        assert figures(gpu)[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    assert gpu.psnr == pytest.approx(cpu.psnr, abs=1e-3)
