"""Saving and loading a prior: ``prior.safetensors`` + ``prior.json``, nothing unpickled.

A prior belongs to one autoencoder: ``prior.json`` records the digest of the weights it was
trained on (``state_digest``), and ``load_prior(run_dir, model=...)`` refuses a prior trained
on other weights. Default folder: ``RUN_DIR/prior/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from depthq.atomic import atomic_write, write_json
from depthq.errors import CorruptFileError, MissingFileError
from depthq.evaluate.bits import EmpiricalPrior
from depthq.io import build_for_state, state_digest
from depthq.prior.config import PriorConfig
from depthq.prior.layout import CodeLayout
from depthq.prior.model import PriorModel

PRIOR_DIR = "prior"
WEIGHTS = "prior.safetensors"
META = "prior.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PriorInfo:
    """What ``prior.json`` says about a saved prior.

    Attributes:
        folder: where it was loaded from.
        layout: the codes it models.
        config: its architecture.
        image_size: side of the images whose codes it models.
        image_channels: C of those images.
        autoencoder_digest: ``state_digest`` of the autoencoder it was trained on.
        digest: ``state_digest`` of the prior itself.
        metadata: the rest (step, validation figures, data), as saved.
    """

    folder: Path
    layout: CodeLayout
    config: PriorConfig
    image_size: int
    image_channels: int
    autoencoder_digest: str
    digest: str
    metadata: dict

    @property
    def dims(self) -> int:
        """C*H*W of one image: the denominator of bits/dim."""
        return self.image_channels * self.image_size**2

    def empirical_prior(self) -> EmpiricalPrior | None:
        """The empirical prior of the codes the prior was trained on (per-codebook frequencies,
        add-one smoothed), to compare rates on the same codes; None if not recorded."""
        counts = self.metadata.get("empirical_counts")
        return None if counts is None else EmpiricalPrior.fit([torch.tensor(c) for c in counts])


def save_prior(
    prior: PriorModel,
    folder: str | os.PathLike,
    *,
    image_size: int,
    image_channels: int,
    autoencoder_digest: str,
    metadata: dict | None = None,
) -> Path:
    """Write ``prior.safetensors`` and ``prior.json`` into ``folder`` (atomically)."""
    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in prior.state_dict().items()}
    weights = atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp))
    write_json(
        folder / META,
        {
            "format_version": FORMAT_VERSION,
            "layout": prior.layout.to_dict(),
            "prior": prior.config.to_dict(),
            "image_size": image_size,
            "image_channels": image_channels,
            "autoencoder_digest": autoencoder_digest,
            "digest": state_digest(prior),
            **(metadata or {}),
        },
    )
    return weights


def prior_folder(path: str | os.PathLike) -> Path:
    """The prior folder of ``path``: ``path`` itself if it holds ``prior.json``, else ``path/prior``."""
    path = Path(path)
    return path if (path / META).is_file() else path / PRIOR_DIR


def read_prior_info(path: str | os.PathLike) -> PriorInfo:
    """What ``prior.json`` says about the prior of a run directory (``RUN_DIR/prior``) or of a
    prior's folder; MissingFileError without a trained prior, CorruptFileError for a damaged file."""
    folder = prior_folder(path)
    meta_path, weights = folder / META, folder / WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise MissingFileError(
            f"no trained prior in {folder} (expected {META} and {WEIGHTS}); train one with `depthq prior train {path}`"
        )
    try:
        meta = json.loads(meta_path.read_text())
        layout, config = CodeLayout.from_dict(meta["layout"]), PriorConfig(**meta["prior"])
        return PriorInfo(
            folder,
            layout,
            config,
            int(meta["image_size"]),
            int(meta["image_channels"]),
            str(meta["autoencoder_digest"]),
            str(meta["digest"]),
            {k: v for k, v in meta.items() if k not in ("layout", "prior")},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptFileError(f"{meta_path} is not a valid prior description ({type(err).__name__}: {err})") from None


def load_prior_weights(info: PriorInfo, *, map_location: str | torch.device = "cpu") -> PriorModel:
    """The prior ``info`` describes (eval mode), its weights checked against ``info.digest``."""
    weights = info.folder / WEIGHTS
    try:
        state = load_safetensors(weights.read_bytes())
    except (SafetensorError, RuntimeError, OSError, ValueError) as err:  # a damaged file
        raise CorruptFileError(f"cannot load the prior's weights {weights}: {err}") from None
    # the sequence and the code table the layout implies (plain ints) against the file's tables
    # first (the model's bookkeeping is O(steps)), then the whole model built on the meta
    # device: a prior.json claiming a huge layout or transformer is refused before it is allocated
    layout, joint = info.layout, info.config.order == "joint"
    steps = layout.total_positions * (1 if joint else layout.codebooks)
    rows = sum(layout.codebook_sizes) * layout.codebooks
    for name, claimed in (("pos_emb.weight", steps), ("code_emb.weight", rows)):
        held = state.get(name)
        if held is None or held.dim() != 2 or held.shape[0] != claimed:
            shape = None if held is None else tuple(held.shape)
            raise CorruptFileError(
                f"{weights} does not fit {info.folder / META}: its layout needs {name} of {claimed:,} rows, "
                f"the file holds {shape}"
            )
    prior = build_for_state(lambda: PriorModel(info.layout, info.config), state, weights, info.folder / META)
    prior = prior.to(map_location).eval()
    if state_digest(prior) != info.digest:
        raise CorruptFileError(
            f"{weights} does not match the digest in {info.folder / META}: the file was changed or damaged"
        )
    return prior


def check_autoencoder(info: PriorInfo, autoencoder_digest: str) -> None:
    """CorruptFileError unless the prior was trained on the weights of ``autoencoder_digest``."""
    if autoencoder_digest != info.autoencoder_digest:
        raise CorruptFileError(
            f"the prior in {info.folder} was trained on other autoencoder weights than the model given (digest "
            f"{info.autoencoder_digest[:12]}... vs {autoencoder_digest[:12]}...); train a prior for these weights "
            "with `depthq prior train`"
        )


def load_prior(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    autoencoder_digest: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[PriorModel, PriorInfo]:
    """Load a trained prior (eval mode) from a run directory (``RUN_DIR/prior``) or its folder.

    Args:
        path: the autoencoder's run directory, or the prior's folder itself.
        model: the autoencoder it will be used with; a prior trained on other weights is refused.
        autoencoder_digest: instead of ``model``, its ``state_digest`` when already known.
        map_location: device for the weights.
    """
    info = read_prior_info(path)
    if autoencoder_digest is None and model is not None:
        autoencoder_digest = state_digest(model)
    if autoencoder_digest is not None:
        check_autoencoder(info, autoencoder_digest)
    return load_prior_weights(info, map_location=map_location), info
