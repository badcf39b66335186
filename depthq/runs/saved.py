"""A saved run, opened once: what ``depthq eval``, ``prior train``, ``sample``, ``compress`` and
``decompress`` take.

``SavedRun.open(run_dir)`` reads the run's ``config.json``, the weights' sidecar and the weights
once each (``depthq.io.load_weights``), and hashes the weights once (``state_digest``: what a
learned prior and a .dqz file are tied to). Everything a command needs after that comes from
this object: the typed run config, the data module (built once per data set asked for), the
run's data as its prior sees it, and its learned prior (read once).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from depthq.config import RunConfig
from depthq.data import ImageDataModule
from depthq.errors import ConfigError
from depthq.io import WEIGHTS, Export, load_weights, state_digest
from depthq.models import HierarchicalAutoencoder
from depthq.prior.data import RunData
from depthq.prior.io import PRIOR_DIR, PriorInfo, check_autoencoder, load_prior_weights, read_prior_info
from depthq.prior.learned import PriorChoice, choose_prior
from depthq.prior.model import PriorModel


@dataclass
class SavedRun:
    """One run folder's weights, record and data, read once (``SavedRun.open``)."""

    run_dir: Path
    weights: str
    """The weights file of the run that was opened (``model.safetensors``, ``best.safetensors``)."""
    model: HierarchicalAutoencoder
    """In eval mode, on the device it was opened on."""
    export: Export
    """The record of these weights: their step, validation and the run's config."""
    digest: str
    """``state_digest(model)``."""
    _datamodules: dict[tuple[str | None, str | None], ImageDataModule] = field(default_factory=dict, repr=False)

    @classmethod
    def open(
        cls, run_dir: str | os.PathLike, *, weights: str = WEIGHTS, device: str | torch.device = "cpu"
    ) -> SavedRun:
        """Open a run folder written by ``depthq train`` (or ``depthq.io.save_model``)."""
        loaded = load_weights(run_dir, weights=weights, map_location=device)
        return cls(Path(run_dir), weights, loaded.model, loaded.export, state_digest(loaded.model))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def weights_path(self) -> Path:
        return self.run_dir / self.weights

    def config(self, data: str | None = None, root: str | None = None) -> RunConfig:
        """The run's config, with another data set (``data``) or its folder (``root``) applied."""
        run = self.export.run
        if run is None:
            if data is None:
                raise ConfigError(f"{self.run_dir} records no run config (saved outside depthq train): pass --data")
            run = RunConfig(model=self.export.model)
        section = run.data
        if data is not None:
            section = dataclasses.replace(section, name=data, root=root)
        elif root is not None:
            section = dataclasses.replace(section, root=root)
        return dataclasses.replace(run, data=section)

    def datamodule(self, data: str | None = None, root: str | None = None) -> ImageDataModule:
        """The data module of ``config(data, root)``, built once (it reads no image yet)."""
        key = (data, root)
        if key not in self._datamodules:
            self._datamodules[key] = self.config(data, root).datamodule()
        return self._datamodules[key]

    @property
    def run_data(self) -> RunData:
        """The run's own data as its learned prior and the codec read it."""
        return RunData.of_datamodule(self.datamodule(), self.config(), self.model.config.image_channels)

    @property
    def prior_dir(self) -> Path:
        return self.run_dir / PRIOR_DIR

    def learned_prior(self, option: str | None, image_size: int) -> PriorChoice:
        """The learned prior an evaluation at ``image_size`` uses (``EvalOptions.prior``: "auto",
        a prior's folder, or None), read once, with a line saying which or why none."""
        return choose_prior(self.run_dir, option, image_size, weights_digest=self.digest, device=self.device)

    def prior(self, path: str | os.PathLike | None = None) -> tuple[PriorModel, PriorInfo]:
        """The learned prior in ``path`` (default: the run's own), refused when it was trained
        on other weights."""
        info = read_prior_info(self.run_dir if path is None else path)
        check_autoencoder(info, self.digest)
        return load_prior_weights(info, map_location=self.device), info
