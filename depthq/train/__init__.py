"""Training on Lightning: the LightningModule, callbacks and the run orchestration."""

from depthq.train.module import DQModule
from depthq.train.run import make_datamodule, resolve_precision, train

__all__ = ["DQModule", "make_datamodule", "resolve_precision", "train"]
