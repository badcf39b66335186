"""Training checkpoints: written atomically with a checksum, read back only if intact.

A checkpoint ``checkpoints/last.ckpt`` is ``torch.save`` output (tensors and plain values only,
loaded with ``weights_only=True``). Next to it, ``last.ckpt.json`` records its SHA-256 and step.
The sidecar is replaced before the checkpoint is renamed into place and also keeps the previous
checkpoint's checksum, so a run killed between the two renames still holds a verifiable file;
a truncated, emptied or bit-flipped checkpoint is refused with one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from depthq.atomic import atomic_write, write_json
from depthq.errors import CorruptFileError, MissingFileError

log = logging.getLogger(__name__)

CHUNK = 1 << 24


def sidecar(path: str | os.PathLike) -> Path:
    """``last.ckpt`` -> ``last.ckpt.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _record(path: Path) -> dict[str, Any] | None:
    side = sidecar(path)
    if not side.is_file():
        return None
    try:
        record = json.loads(side.read_text())
        return record if isinstance(record, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically, its checksum and step recorded in the sidecar."""
    path = Path(path)
    previous = _record(path)

    def write(tmp: str) -> None:
        torch.save(checkpoint, tmp)
        write_json(
            sidecar(path),
            {
                "sha256": sha256_file(tmp),
                "step": checkpoint.get("global_step"),
                # the file still in place until the rename below: kept verifiable meanwhile
                "previous_sha256": None if previous is None else previous.get("sha256"),
            },
        )

    return atomic_write(path, write)


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise MissingFileError / CorruptFileError unless ``path`` is a complete checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"checkpoint {path} is empty")
    record = _record(path)
    if record is None:
        if sidecar(path).is_file():
            raise CorruptFileError(f"the checksum file {sidecar(path)} of {path} is unreadable")
        log.debug("%s has no checksum file (written by an older depthq): not verified", path)
        return
    actual = sha256_file(path)
    if actual not in (record.get("sha256"), record.get("previous_sha256")):
        raise CorruptFileError(
            f"checkpoint {path} does not match its checksum in {sidecar(path).name} "
            f"(SHA-256 {actual[:16]}..., recorded {str(record.get('sha256'))[:16]}...): "
            "the file is corrupt"
        )


def read_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A verified checkpoint, loaded without unpickling arbitrary objects."""
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptFileError(
            f"checkpoint {path} cannot be read ({first[:200]}): the file is truncated or corrupt"
        ) from err


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step a checkpoint was saved at, from its sidecar (None: unknown)."""
    record = _record(Path(path))
    step = None if record is None else record.get("step")
    return step if isinstance(step, int) else None
