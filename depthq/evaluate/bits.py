"""bits/dim, honestly: the distortion term, the rate of the codes, and their total.

For a deterministic encoder z = e(x), log p(x) >= log p(x|z) + log p(z) (VQ-VAE, sec. 3.2), so

    bits/dim = [ -log p(x|z) - log p(z) ] / (C*H*W * ln 2)

- distortion bits/dim: -log2 p(x|z) / (C*H*W), the reconstruction term alone. The paper's
  headline numbers appear to be this term (spec section 4), so it is labelled as such.
- rate: -log2 p(z) per image under a named prior over the codes:
  * uniform: sum over levels of positions * M * log2 K (the constant KL of a uniform prior);
  * empirical: per-codebook code frequencies fitted on a training split (add-alpha smoothed,
    so a code never seen in training still has a finite cost).
- total bits/dim = distortion + rate / (C*H*W), with the prior named.

A prior over the codes is any object with a ``name``, a ``description`` and
``rate_bits(indices) -> (B,)`` (``CodePrior``): ``UniformPrior`` and ``EmpiricalPrior`` here, a
learned prior elsewhere. ``depthq.evaluate.result`` turns the rates into labelled figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

LN2 = math.log(2.0)


def bits_per_dim(nats_per_image: Tensor | float, dims: int) -> Tensor | float:
    """nats per image -> bits per dimension (dims = C*H*W)."""
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    return nats_per_image / (dims * LN2)


@dataclass(frozen=True)
class LevelShape:
    """What a level's codes look like for one image: positions h*w, M codebooks of K codes."""

    positions: int
    num_codebooks: int
    codebook_size: int

    @classmethod
    def of(cls, indices: Tensor, codebook_size: int) -> LevelShape:
        """From a level's index tensor (B, M, h, w)."""
        if indices.dim() != 4:
            raise ValueError(f"expected level indices (B, M, h, w), got shape {tuple(indices.shape)}")
        return cls(indices.shape[2] * indices.shape[3], indices.shape[1], codebook_size)


def uniform_rate_bits(levels: Sequence[LevelShape]) -> float:
    """-log2 p(z) per image under a uniform prior: sum of positions * M * log2 K."""
    return sum(lv.positions * lv.num_codebooks * math.log2(lv.codebook_size) for lv in levels)


@runtime_checkable
class CodePrior(Protocol):
    """A prior over a model's codes: its rate is -log2 p(z) per image.

    ``name`` is what the figures call it ("uniform", "empirical", "learned": the label reads
    "total bits/dim, <name> prior"); ``description`` says how it was made.
    """

    name: str
    description: str

    def rate_bits(self, indices: Sequence[Tensor]) -> Tensor:
        """Per-level indices (B, M, h, w), bottom to top -> (B,) bits per image."""
        ...


class UniformPrior:
    """Every code of a codebook equally likely: the codes cost their full capacity.

    -log2 p(z) = sum over levels of positions * M * log2 K (the same for every image).
    """

    name = "uniform"
    description = "uniform over each codebook's K codes (the codes' full capacity)"

    def __init__(self, codebook_sizes: Sequence[int]) -> None:
        self.codebook_sizes = list(codebook_sizes)

    def rate_bits(self, indices: Sequence[Tensor]) -> Tensor:
        if len(indices) != len(self.codebook_sizes):
            raise ValueError(f"expected indices for {len(self.codebook_sizes)} levels, got {len(indices)}")
        bits = uniform_rate_bits([LevelShape.of(z, k) for z, k in zip(indices, self.codebook_sizes)])
        return torch.full((indices[0].shape[0],), bits, dtype=torch.float64, device=indices[0].device)


class EmpiricalPrior:
    """p(z) = prod over levels, codebooks and positions of p_{level, m}(z): code frequencies.

    Fitted on code counts of a training split; ``alpha`` is added to every count (add-one
    smoothing by default) so unseen codes cost log2(total + K*alpha) bits, not infinity.
    ``description`` says where the counts came from; it is printed next to every figure.
    """

    name = "empirical"

    def __init__(self, log2_probs: Sequence[Tensor], description: str = "code frequencies") -> None:
        self.log2_probs = [lp.double() for lp in log2_probs]  # per level (M, K), float64
        self.description = description

    @classmethod
    def fit(
        cls, counts: Sequence[Tensor], alpha: float = 1.0, description: str = "code frequencies, add-one smoothed"
    ) -> EmpiricalPrior:
        """From per-level code counts (M, K) (e.g. ``CodeStatistics.marginal``)."""
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (smoothing keeps unseen codes finite), got {alpha}")
        log2_probs = []
        for c in counts:
            c = c.double() + alpha
            log2_probs.append((c / c.sum(-1, keepdim=True)).log2())
        return cls(log2_probs, description)

    def rate_bits(self, indices: Sequence[Tensor]) -> Tensor:
        """-log2 p(z) per image: per-level indices (B, M, h, w) -> (B,) bits."""
        if len(indices) != len(self.log2_probs):
            raise ValueError(f"expected indices for {len(self.log2_probs)} levels, got {len(indices)}")
        total = None
        for z, lp in zip(indices, self.log2_probs):
            if z.dim() != 4 or z.shape[1] != lp.shape[0]:
                raise ValueError(f"expected indices (B, {lp.shape[0]}, h, w), got {tuple(z.shape)}")
            lp = lp.to(z.device)
            m = torch.arange(lp.shape[0], device=z.device).view(1, -1, 1, 1)
            bits = -lp[m, z].sum(dim=(1, 2, 3))  # (B,)
            total = bits if total is None else total + bits
        if total is None:
            raise ValueError("an empirical prior needs at least one level, got none")
        return total

    def state_dict(self) -> dict[str, Tensor]:
        return {f"level{i}": lp for i, lp in enumerate(self.log2_probs)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> EmpiricalPrior:
        return cls([state[f"level{i}"] for i in range(len(state))])
