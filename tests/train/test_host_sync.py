"""No host read of a tensor by depthq code during a training step (after the first steps).

On a GPU every ``.item()``, ``bool(t)``, ``float(t)``... waits for the queued work: the step can
no longer run ahead of the device. CI has no GPU, so this counts the reads themselves on the
CPU, attributed to the innermost caller outside torch: depthq's reads fail the test, Lightning's
(logging every ``log_every`` steps) are its own business. tests/train/test_train_cuda.py checks the
same on a GPU with ``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

import os
import sys

import lightning as L
import torch

import depthq
from depthq.config import load_config
from depthq.train import train

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
TORCH_DIR = os.path.dirname(torch.__file__)
DEPTHQ_DIR = os.path.dirname(depthq.__file__)


def caller_outside_torch(frame) -> str:
    """``file:line`` of the innermost frame that is neither torch nor this file."""
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(TORCH_DIR) and name != __file__:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


class HostReads(L.Callback):
    """Records the tensor reads on the host made during the training steps from ``first`` on."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.reads: list[str] = []
        self._saved: dict[str, object] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step < self.first:
            return
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = torch.Tensor.__dict__.get(name)

            def wrapper(tensor, *args, _original=original, **kwargs):
                self.reads.append(caller_outside_torch(sys._getframe(1)))
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, wrapper)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name, saved in self._saved.items():
            if saved is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, saved)
        self._saved.clear()


def test_training_steps_read_nothing_on_the_host(tmp_path):
    config = load_config(None, [
        "model.preset=tiny", "model.kmeans_init=true", "model.dead_code_threshold=1.0",
        "data.batch_size=8", "data.max_val_images=8", "data.augment_flip=true", "data.augment_crop=2",
        "train.steps=6", "train.val_every=100", "train.checkpoint_every=100", "train.log_every=2",
        "train.skip_grad_norm=1e6", "train.progress=false"])
    probe = HostReads(first=2)  # k-means initialisation reads once, on the first step
    summary = train(config, tmp_path / "run", callbacks=[probe])
    assert summary.steps == 6 and summary.skipped_steps == 0
    ours = [r for r in probe.reads if r.startswith(DEPTHQ_DIR)]
    assert not ours, f"host reads by depthq during training steps: {sorted(set(ours))}"


def test_the_probe_sees_every_kind_of_read():
    class Trainer:
        global_step = 5

    probe = HostReads(first=0)
    probe.on_train_batch_start(Trainer(), None, None, 0)
    try:
        t = torch.ones(())
        t.item(), t.tolist(), bool(t), float(t), int(t), [0, 1][t.long()]
    finally:
        probe.on_train_batch_end(Trainer(), None, None, None, 0)
    assert len(probe.reads) == len(HOST_READS)
    assert "wrapper" not in str(torch.Tensor.item) and not probe._saved  # restored
