"""A trained prior as the ``learned`` prior of an evaluation, and which one an evaluation uses.

``LearnedPrior`` wraps a ``PriorModel`` as a ``depthq.evaluate.CodePrior`` named "learned": its
rate is the prior's teacher-forced NLL of the evaluated codes, and ``EvalResult.total("learned")``
is ``total bits/dim, learned prior`` = distortion + that rate over C*H*W.

``choose_prior(run_dir, option, image_size, weights_digest=...)`` decides, once, which prior an evaluation
uses (``EvalOptions.prior``):

- ``"auto"``: the run's own ``RUN_DIR/prior`` if one was trained for these very weights and
  images of this size; otherwise none, and the note says why (none trained, trained for other
  weights, other image size) and how to train one;
- a folder: that prior, or a ``DepthqError`` (missing, damaged, trained for other weights,
  another image size);
- None: no learned prior.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from depthq.errors import ConfigError, CorruptFileError
from depthq.prior.io import META, PriorInfo, check_autoencoder, load_prior_weights, prior_folder, read_prior_info
from depthq.prior.model import PriorModel

AUTO = "auto"


class LearnedPrior:
    """A trained ``PriorModel`` as a ``CodePrior`` (name "learned"), with where it came from."""

    name = "learned"

    def __init__(self, model: PriorModel, info: PriorInfo) -> None:
        self.model, self.info = model, info
        step = info.metadata.get("step")
        self.description = (
            f"learned prior {info.folder} ({model.config.order} order, "
            f"{model.num_parameters():,} parameters"
            + ("" if step is None else f", {step:,} training steps")
            + "): its teacher-forced NLL of the evaluated codes"
        )

    def rate_bits(self, indices: Sequence[Tensor]) -> Tensor:
        """Per-level codes (B, M, h, w), bottom first -> (B,) float64 bits per image."""
        return self.model.rate_bits(indices)


@dataclass(frozen=True)
class PriorChoice:
    """The learned prior an evaluation uses (None: none) and a line saying which, or why none."""

    prior: LearnedPrior | None
    note: str


def choose_prior(
    run_dir: str | os.PathLike,
    option: str | None,
    image_size: int,
    *,
    weights_digest: str,
    device: str | torch.device = "cpu",
) -> PriorChoice:
    """The learned prior of ``EvalOptions.prior`` (see the module docstring), reading the prior's
    files once.

    Args:
        run_dir: the evaluated run.
        option: "auto", a prior's folder, or None.
        image_size: side of the evaluated images.
        weights_digest: ``state_digest`` of the evaluated autoencoder.
    """
    train = f"train one with `depthq prior train {run_dir}`"
    if option is None:
        return PriorChoice(None, "learned prior: not used (--no-prior)")
    if option != AUTO:
        info = read_prior_info(option)
        check_autoencoder(info, weights_digest)  # refuses other weights
        if info.image_size != image_size:
            raise ConfigError(
                f"the prior in {info.folder} models the codes of {info.image_size}x{info.image_size} "
                f"images; the evaluated images are {image_size}x{image_size} (pass --no-prior)"
            )
        return PriorChoice(
            LearnedPrior(load_prior_weights(info, map_location=device), info), f"learned prior: {info.folder}"
        )
    folder = prior_folder(run_dir)
    if not (folder / META).is_file():
        return PriorChoice(None, f"learned prior: none trained ({train})")
    try:
        info = read_prior_info(folder)
    except CorruptFileError as err:
        raise CorruptFileError(f"{err}; {train} again or pass --no-prior") from None
    if info.autoencoder_digest != weights_digest:
        return PriorChoice(
            None,
            f"learned prior: not used, {folder} was trained on other weights than the "
            f"evaluated ones ({train} --weights ..., or pass --prior)",
        )
    if info.image_size != image_size:
        size = info.image_size
        return PriorChoice(
            None,
            f"learned prior: not used, {folder} models {size}x{size} images and the "
            f"evaluated ones are {image_size}x{image_size}",
        )
    prior = load_prior_weights(info, map_location=device)
    return PriorChoice(LearnedPrior(prior, info), f"learned prior: {Path(info.folder)} (the run's own)")
