"""Streaming evaluation of an autoencoder: bits/dim (labelled), MSE/PSNR and code usage.

``Evaluator`` accumulates sums and code counts batch by batch (never the whole split in
memory), so validation during training and ``depthq eval`` compute every figure the same way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from depthq.evaluate.bits import (
    LABELS,
    EmpiricalPrior,
    LevelShape,
    summary,
    uniform_rate_bits,
)
from depthq.evaluate.information import CodeStatistics
from depthq.models import AutoencoderOutput, HierarchicalAutoencoder


def psnr(mse: float, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error in pixel units."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


class Evaluator:
    """Accumulates the evaluation figures of one model over a split.

    Args:
        model: the autoencoder (its head decides whether bits/dim exist).
        prior: an empirical prior over the codes for the "total, empirical prior" figure
            (None: that figure is left out).
        prior_name: how the prior was fitted, recorded next to the figure.
        diagnostics: also keep pairwise and per-position code statistics (mutual information,
            entropy maps); costlier, for ``depthq eval``.
    """

    def __init__(self, model: HierarchicalAutoencoder, *, prior: EmpiricalPrior | None = None,
                 prior_name: str = "", diagnostics: bool = False) -> None:
        self.model = model
        self.prior, self.prior_name = prior, prior_name
        config = model.config
        m = config.codebooks_per_level
        self.codes = [
            CodeStatistics(m, k, pairwise=diagnostics and m > 1, positions=diagnostics,
                           joint=diagnostics and m > 1)
            for k in config.codebook_sizes
        ]
        self.images = 0
        self.dims: int | None = None
        self.nll_nats = 0.0
        self.squared_error = 0.0
        self.empirical_bits = 0.0
        self.level_shapes: list[LevelShape] | None = None

    @torch.no_grad()
    def update(self, x: Tensor, out: AutoencoderOutput | None = None) -> Tensor:
        """Add a uint8 batch (B, C, H, W); ``out`` from the model's forward when already run.

        Returns the uint8 reconstructions (the mean of p(x|z), see ``LikelihoodHead.mean``).
        """
        if out is None:
            out = self.model(x)
        dims = x[0].numel()
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            raise ValueError(f"all images of an evaluation must have {self.dims} dims, got {dims}")
        head = self.model.head
        if head.has_likelihood:
            self.nll_nats += float(head.nll(out.params, x).double().sum())
        recon = head.mean(out.params)
        self.squared_error += float((recon.double() - x.double()).pow(2).sum())
        for stats, z in zip(self.codes, out.indices):
            stats.update(z)
        if self.level_shapes is None:
            self.level_shapes = [LevelShape.of(z, k) for z, k in zip(out.indices, self.model.config.codebook_sizes)]
        if self.prior is not None:
            self.empirical_bits += float(self.prior.rate_bits(out.indices).sum())
        self.images += x.shape[0]
        return recon

    def result(self) -> dict:
        """The figures so far, as plain JSON-ready values (see the README for each key)."""
        if self.images == 0:
            raise ValueError("no images were evaluated")
        n, dims = self.images, self.dims
        mse = self.squared_error / (n * dims)
        uniform_bits = uniform_rate_bits(self.level_shapes)
        out: dict = {"images": n, "dims": dims, "mse": mse, "psnr": psnr(mse),
                     "rate_bits_per_image": {"uniform": uniform_bits}}
        if self.model.head.has_likelihood:
            empirical = self.empirical_bits / n if self.prior is not None else None
            out["bits_per_dim"] = summary(self.nll_nats / n, dims, uniform_bits, empirical)
            out["labels"] = {k: LABELS[k] for k in out["bits_per_dim"]}
            if empirical is not None:
                out["rate_bits_per_image"]["empirical"] = empirical
                out["prior"] = self.prior_name
        else:
            out["bits_per_dim"] = None
            out["labels"] = {"bits_per_dim": f"n/a: the {self.model.config.head} head has no likelihood"}
        out["levels"] = [self._level(i, stats) for i, stats in enumerate(self.codes)]
        return out

    def _level(self, index: int, stats: CodeStatistics) -> dict:
        usage = stats.usage()
        entry = {
            "level": index,
            "codebook_size": stats.codebook_size,
            "positions": self.level_shapes[index].positions,
            "entropy_nats": stats.entropies().tolist(),
            "perplexity": usage["perplexity"].tolist(),
            "used_fraction": usage["fraction_used"].tolist(),
            "dead_codes": usage["dead_codes"].tolist(),
        }
        if stats.pairwise:
            entry["mutual_information_nats"] = stats.mutual_information().tolist()
            entry["mean_offdiagonal_mi_nats"] = stats.mean_offdiagonal_mi()
            entry["total_correlation_nats"] = stats.total_correlation()
        return entry


def ema_prior(model: HierarchicalAutoencoder) -> EmpiricalPrior:
    """An empirical prior from the quantizers' EMA counts (recent training batches).

    A cheap stand-in for a prior fitted on the whole training split, used during validation.
    """
    return EmpiricalPrior.fit([q.ema_count.detach().cpu() for q in model.quantizers])

