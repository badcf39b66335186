"""Training on Lightning: the LightningModule, the run directory's writer and the run."""

from depthq.train.module import DQModule
from depthq.train.run import resolve_precision, train
from depthq.train.summary import TrainSummary

__all__ = ["DQModule", "TrainSummary", "resolve_precision", "train"]
