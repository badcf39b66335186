"""Saving and loading models: safetensors weights + a JSON config, written atomically.

``save_model(model, folder)`` writes ``model.safetensors`` (every parameter and buffer,
codebooks and EMA statistics included) and ``config.json`` (the ``ModelConfig`` plus metadata);
``load(run_dir)`` rebuilds the model from them. Nothing is ever unpickled: safetensors holds
raw tensors and JSON holds plain values. Each file is written to a temporary name in the same
folder and renamed over the target, so a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from depthq.atomic import atomic_write, write_json
from depthq.models import HierarchicalAutoencoder, ModelConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def save_model(model: HierarchicalAutoencoder, folder: str | os.PathLike, *,
               weights_name: str = WEIGHTS, metadata: dict | None = None) -> Path:
    """Write ``weights_name``, its metadata sidecar ``<stem>.json`` and ``config.json``.

    ``config.json`` (the model config plus the latest metadata) is what ``load`` needs; the
    sidecar keeps the metadata of that weights file (its step and validation), since a run
    folder holds several (``model.safetensors``, ``best.safetensors``).
    """
    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = atomic_write(folder / weights_name, lambda tmp: save_file(state, tmp))
    payload = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), **(metadata or {})}
    write_json(weights.with_suffix(".json"), payload)
    write_json(folder / CONFIG, payload)
    return weights


def read_metadata(run_dir: str | os.PathLike, weights: str = WEIGHTS) -> dict:
    """The metadata saved with a weights file (its sidecar), else the run's config.json."""
    sidecar = (Path(run_dir) / weights).with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else read_config(run_dir)


def read_config(run_dir: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a run directory (or model folder)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: expected a run directory written by `depthq train` "
            f"(with {CONFIG} and {WEIGHTS})"
        )
    return json.loads(path.read_text())


def load(run_dir: str | os.PathLike, *, weights: str = WEIGHTS,
         map_location: str | torch.device = "cpu") -> HierarchicalAutoencoder:
    """Rebuild the model saved in ``run_dir`` (eval mode), without unpickling anything.

    Args:
        run_dir: a run directory or any folder with ``config.json`` and the weights file.
        weights: the weights file name (``model.safetensors``; runs also keep
            ``best.safetensors``).
        map_location: device for the tensors.
    """
    run_dir = Path(run_dir)
    config = ModelConfig.from_dict(read_config(run_dir)["model"])
    path = run_dir / weights
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the run directory {run_dir}")
    model = HierarchicalAutoencoder(config)
    model.load_state_dict(load_file(str(path), device=str(map_location)))
    return model.to(map_location).eval()
