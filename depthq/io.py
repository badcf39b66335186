"""Saving and loading models: safetensors weights + JSON, checksummed, written atomically.

``save_model(model, folder)`` writes ``model.safetensors`` (every parameter and buffer,
codebooks and EMA statistics included), its sidecar ``model.json`` and ``config.json`` (the
``ModelConfig`` plus what the run recorded: an ``Export``); ``load(run_dir)`` rebuilds the model
from them. Nothing is ever unpickled: safetensors holds raw tensors and JSON plain values.

Integrity: the SHA-256 of the tensor data is stored in the safetensors header itself
(``__metadata__["depthq_sha256"]``), so the file and its checksum are written in one atomic
rename, and ``load`` refuses a truncated or bit-flipped file, or weights of another model, with
one clear message naming the file. Files saved before checksums existed load unchecked.

Identity: ``state_digest(module)`` names trained weights independently of the file they came
from (the learned prior and the codec's files record it, and refuse other weights).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.overrides import TorchFunctionMode

from depthq.atomic import atomic_write, write_json
from depthq.config import RunConfig, saved_run_config
from depthq.errors import CorruptFileError, MissingFileError
from depthq.evaluate.result import EvalResult
from depthq.models import HierarchicalAutoencoder, ModelConfig

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 2  # 1: no checksum, untyped validation; both are read
CHECKSUM_KEY = "depthq_sha256"


@dataclass(frozen=True)
class Export:
    """What a weights file's sidecar (``<stem>.json``) and the run's ``config.json`` record."""

    model: ModelConfig
    run: RunConfig | None = None
    """The whole run config (None: saved outside ``depthq train``)."""
    step: int | None = None
    parameters: int | None = None
    precision: str | None = None
    channels_last: bool | None = None
    skipped_steps: int | None = None
    validation: EvalResult | None = None
    """The validation at ``step`` (the one that made best.safetensors the best)."""

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model.to_dict(),
            "run": None if self.run is None else self.run.to_dict(),
            "step": self.step,
            "parameters": self.parameters,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "skipped_steps": self.skipped_steps,
            "validation": None if self.validation is None else self.validation.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict, origin: str) -> Export:
        version = values.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CorruptFileError(
                f"{origin} has format version {version!r}, newer than this depthq "
                f"reads ({FORMAT_VERSION}): upgrade depthq"
            )
        if "model" not in values:
            raise CorruptFileError(f"{origin} has no 'model' entry: not written by depthq")
        try:
            model = ModelConfig.from_dict(values["model"])
            run = values.get("run")
            validation = values.get("validation")
            # format 1 stored the validation as an untyped dict: not carried over
            validation = (
                EvalResult.from_dict(validation, origin=f"{origin} (validation)")
                if version >= 2 and validation is not None
                else None
            )
            return cls(
                model=model,
                run=None if run is None else saved_run_config(run, origin),
                step=values.get("step"),
                parameters=values.get("parameters"),
                precision=values.get("precision"),
                channels_last=values.get("channels_last"),
                skipped_steps=values.get("skipped_steps"),
                validation=validation,
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, CorruptFileError):
                raise
            raise CorruptFileError(f"{origin}: {err}") from err


def save_model(
    model: HierarchicalAutoencoder,
    folder: str | os.PathLike,
    *,
    weights_name: str = WEIGHTS,
    export: Export | None = None,
) -> Path:
    """Write ``weights_name`` (checksummed), its sidecar ``<stem>.json`` and ``config.json``.

    ``config.json`` (the model config plus the latest export record) is what ``load`` needs;
    the sidecar keeps the record of that weights file (its step and validation), since a run
    folder holds several (``model.safetensors``, ``best.safetensors``).
    """
    folder = Path(folder)
    export = export or Export(model=model.config)
    if export.model != model.config:
        raise ValueError("export.model must be the model's own config")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    plain = save_safetensors(state)
    data = memoryview(plain)[8 + int.from_bytes(plain[:8], "little") :]
    blob = save_safetensors(state, metadata={"format": "pt", CHECKSUM_KEY: hashlib.sha256(data).hexdigest()})
    if memoryview(blob)[-len(data) :] != data:  # the header grew, the tensor bytes did not move
        raise RuntimeError("safetensors laid the tensors out differently with metadata")
    weights = atomic_write(folder / weights_name, lambda tmp: Path(tmp).write_bytes(blob))
    payload = export.to_dict()
    write_json(weights.with_suffix(".json"), payload)
    write_json(folder / CONFIG, payload)
    return weights


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (CPU), after checking its stored checksum.

    CorruptFileError, naming the file, if it is empty, truncated, unreadable or does not match.
    """

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} not found")
    blob = path.read_bytes()
    size = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else None
    if size is None or 8 + size > len(blob):
        raise CorruptFileError(
            f"{path} is truncated or empty ({len(blob):,} bytes): the file is incomplete; export or copy it again"
        )
    try:
        header: Any = json.loads(blob[8 : 8 + size])
        expected = (header.get("__metadata__") or {}).get(CHECKSUM_KEY)
        data_end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise CorruptFileError(f"{path} has an unreadable header ({err}): the file is corrupt") from err
    if len(blob) - 8 - size < data_end:
        raise CorruptFileError(
            f"{path} is truncated: {len(blob):,} bytes where its header describes "
            f"{8 + size + data_end:,}; export or copy it again"
        )
    if expected is None:
        log.debug("%s has no stored checksum (saved by an older depthq): not verified", path)
    else:
        actual = hashlib.sha256(memoryview(blob)[8 + size :]).hexdigest()
        if actual != expected:
            raise CorruptFileError(
                f"{path} does not match the checksum stored in it (SHA-256 of its "
                f"tensors {actual[:16]}..., recorded {expected[:16]}...): the file "
                "is corrupt"
            )
    try:
        return load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CorruptFileError(f"{path} cannot be read as safetensors ({err}): the file is corrupt") from err


#: torch calls a module's construction may make per tensor of its state (a Linear: empty,
#: kaiming_uniform_, uniform_, ...), far above what depthq's modules need
_BUILD_CALLS_PER_TENSOR = 64


class _BoundedBuild(TorchFunctionMode):
    """Counts the torch calls of a construction and stops it past ``limit``: a record claiming
    a million layers is refused after a few thousand calls, not after a million modules."""

    def __init__(self, limit: int, path: str | os.PathLike, record: str | os.PathLike) -> None:
        super().__init__()
        self.limit, self.path, self.record, self.calls = limit, path, record, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        if self.calls > self.limit:
            raise CorruptFileError(
                f"{self.path} does not fit the model of {self.record}, which has far more tensors than the "
                f"file's {self.limit // _BUILD_CALLS_PER_TENSOR - 16}: weights of another model?"
            )
        return func(*args, **(kwargs or {}))


def build_for_state(
    factory: Callable[[], M], state: dict[str, torch.Tensor], path: str | os.PathLike, record: str | os.PathLike
) -> M:
    """The module ``factory()`` builds, loaded with ``state`` (the tensors read from ``path``);
    ``CorruptFileError`` (one line, naming ``path`` and the ``record`` that describes the
    module) when they do not fit it.

    The module is first built on the meta device (no memory) and its tensors' names, shapes and
    dtypes compared with ``state``: a record that describes a far larger model than its weights
    file holds (a crafted or damaged config) is refused before anything in proportion to its
    claims is allocated; memory stays bounded by the weights file actually read.
    """
    try:
        with torch.device("meta"), _BoundedBuild(_BUILD_CALLS_PER_TENSOR * (len(state) + 16), path, record):
            skeleton = factory()
    except (RuntimeError, ValueError, OverflowError, MemoryError) as err:  # sizes no tensor can have
        if isinstance(err, CorruptFileError):
            raise
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CorruptFileError(f"{record} describes a model that cannot be built ({first})") from None
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        differ = [k for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
        what = (
            [f"missing {missing[:3]}"] * bool(missing)
            + [f"unexpected {unexpected[:3]}"] * bool(unexpected)
            + [
                f"{k}: {found[k][0]} {found[k][1]} where the model has {expected[k][0]} {expected[k][1]}"
                for k in differ[:2]
            ]
        )
        raise CorruptFileError(
            f"{path} does not fit the model of {record} ({'; '.join(what)}): weights of another model?"
        )
    module = factory()
    module.load_state_dict(state)
    return module


def _read_record(path: Path) -> Export:
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err}): the file is corrupt") from err
    if not isinstance(values, dict):
        raise CorruptFileError(f"{path} is not a JSON object: not written by depthq")
    return Export.from_dict(values, origin=str(path))


def read_export(folder: str | os.PathLike, weights: str | None = None) -> Export:
    """The record of ``weights`` (its sidecar ``<stem>.json``), or of the run (``config.json``)."""
    folder = Path(folder)
    path = (folder / weights).with_suffix(".json") if weights else folder / CONFIG
    if weights and not path.is_file():
        path = folder / CONFIG
    if not path.is_file():
        raise MissingFileError(
            f"{path} not found: expected a run directory written by `depthq train` (with {CONFIG} and {WEIGHTS})"
        )
    return _read_record(path)


@dataclass(frozen=True)
class LoadedWeights:
    """A run folder's weights, read once: the model and the weights' own record."""

    model: HierarchicalAutoencoder
    export: Export
    """The record of these weights (their sidecar ``<stem>.json``, else the run's ``config.json``)."""
    path: Path


def load_weights(
    run_dir: str | os.PathLike, *, weights: str = WEIGHTS, map_location: str | torch.device = "cpu"
) -> LoadedWeights:
    """Rebuild the model saved in ``run_dir`` (eval mode) with the record of its weights, reading
    ``config.json``, the weights' sidecar and the weights once each, without unpickling anything.

    Args:
        run_dir: a run directory or any folder with ``config.json`` and the weights file.
        weights: the weights file name (``model.safetensors``; runs also keep
            ``best.safetensors``), or a path; its sidecar must describe the same model.
        map_location: device for the tensors.
    """
    run_dir = Path(run_dir)
    run_record = read_export(run_dir)
    config = run_record.model
    path = run_dir / weights
    if not path.is_file():
        raise MissingFileError(f"{path} not found in the run directory {run_dir}")
    sidecar = path.with_suffix(".json")
    record = run_record
    if sidecar.is_file() and sidecar != run_dir / CONFIG:
        record = _read_record(sidecar)
        own = record.model
        if own != config:
            changed = [k for k, v in config.to_dict().items() if own.to_dict().get(k) != v]
            raise CorruptFileError(
                f"{path} was saved for another model than {run_dir / CONFIG} ("
                + ", ".join(f"{k}: {getattr(own, k)!r} there, {getattr(config, k)!r} here" for k in changed[:4])
                + "): weights of another run?"
            )
    state = read_weights(path)
    model = build_for_state(lambda: HierarchicalAutoencoder(config), state, path, run_dir / CONFIG)
    return LoadedWeights(model.to(map_location).eval(), record, path)


def load(
    run_dir: str | os.PathLike, *, weights: str = WEIGHTS, map_location: str | torch.device = "cpu"
) -> HierarchicalAutoencoder:
    """Rebuild the model saved in ``run_dir`` (eval mode), without unpickling anything
    (``load_weights`` without the record)."""
    return load_weights(run_dir, weights=weights, map_location=map_location).model


def state_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state dict: every name, dtype, shape and byte, in name order.

    Identifies trained weights independently of the file they came from (and of the device).
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
