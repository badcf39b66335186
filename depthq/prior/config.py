"""Typed configuration of the learned prior: its architecture and its training.

A prior's folder holds ``config.yaml`` with two sections, each a dataclass validated at
construction::

    prior:  PriorConfig       the transformer (order, width, depth, heads)
    train:  PriorTrainConfig  steps, batch, learning rate, validation, devices

``load_prior_config(path, ["prior.layers=6", "train.steps=3000"])`` reads the file (or the
defaults), applies the overrides and validates them; unknown keys and wrong types raise
``ValueError`` naming the key, as for ``depthq train``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# the section builder and checks of the run config, so that both read and fail the same way
from depthq.config import TrainerConfig, apply_overrides, build_section, check_int
from depthq.errors import ConfigError, MissingFileError

ORDERS = ("joint", "sequential")


#: Upper bounds of the transformer's settings, far above any prior that fits a GPU: a config (or
#: a damaged or crafted prior.json) past them is refused before anything is built from it.
MAX_SIZES = {"dim": 2**15, "layers": 512, "heads": 2**10, "mlp_ratio": 64}


@dataclass
class PriorConfig:
    """The autoregressive transformer over a model's codes (nanoGPT-style, pre-norm)."""

    order: str = "joint"
    """How the M codes of a position are predicted: "joint" (one step per position, M softmax
    heads from one state: the codes are independent given everything before the position) or
    "sequential" (one step per code, each conditioned on the codes before it). Joint is the
    default: on the demo model it reached a lower NLL in the same training time."""
    dim: int = 64
    """Width of the residual stream."""
    layers: int = 3
    """Transformer blocks."""
    heads: int = 4
    """Attention heads (must divide dim)."""
    mlp_ratio: int = 4
    """Hidden width of the MLP, in multiples of dim."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches during training."""

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"prior.order must be one of {ORDERS}, got {self.order!r}")
        for name in ("dim", "layers", "heads", "mlp_ratio"):
            check_int(f"prior.{name}", getattr(self, name), 1, MAX_SIZES[name])
        if self.dim % self.heads:
            raise ConfigError(f"prior.dim ({self.dim}) must be a multiple of prior.heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"prior.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PriorTrainConfig(TrainerConfig):
    """How to train the prior (on the codes of the autoencoder run's training split); the fields
    shared with the autoencoder's ``TrainConfig`` come from ``depthq.config.TrainerConfig``."""

    steps: int = 1500
    """Optimizer steps."""
    lr: float = 1e-3
    """Peak AdamW learning rate, reached after the warm-up, then cosine decay to lr/10."""
    warmup_steps: int = 100
    """Linear warm-up from 0."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this value; 0 disables."""
    precision: str | int = "auto"
    """32, bf16-mixed, 16-mixed, or auto: bf16-mixed on CUDA (16-mixed without bf16), 32 on CPU
    (where bf16 autocast made the prior's small matmuls slower, even with AMX)."""
    seed: int = 0
    """Fixes initialisation and the order of the training batches."""
    val_every: int = 500
    """Validate every this many steps (and at the end)."""
    progress: bool = True
    """Show progress bars."""
    batch_size: int = 32
    """Images (code sequences) per step and device."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices only; embeddings, norms and biases are not decayed)."""
    max_train_images: int | None = None
    """Encode at most this many training images (a seeded subset); null: the whole split."""
    max_val_images: int | None = 1024
    """Validate on at most this many images of the run's val split (seeded subset); null: all."""
    eval_batch_size: int = 256
    """Batch size for encoding images and for validation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "eval_batch_size"):
            check_int(f"train.{name}", getattr(self, name), 1)
        for name in ("max_train_images", "max_val_images"):
            if getattr(self, name) is not None:
                check_int(f"train.{name}", getattr(self, name), 1)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"train.weight_decay must be a finite number >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PriorRunConfig:
    """A prior's whole configuration: architecture and training."""

    prior: PriorConfig = field(default_factory=PriorConfig)
    train: PriorTrainConfig = field(default_factory=PriorTrainConfig)

    def to_dict(self) -> dict:
        return {"prior": self.prior.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, tree: dict | None) -> PriorRunConfig:
        tree = tree or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"a prior config is a mapping with prior and train; got {type(tree).__name__}")
        unknown = sorted(set(tree) - {"prior", "train"})
        if unknown:
            raise ConfigError(
                f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                "in a prior config; valid sections: prior, train"
            )
        return cls(
            build_section(PriorConfig, tree.get("prior"), "prior"),
            build_section(PriorTrainConfig, tree.get("train"), "train"),
        )


def load_prior_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> PriorRunConfig:
    """Read a prior's ``config.yaml`` (None: the defaults) and apply ``section.key=value`` overrides."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"prior config {path} not found")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    return PriorRunConfig.from_dict(apply_overrides(tree, overrides))


def dump_prior_config(config: PriorRunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
