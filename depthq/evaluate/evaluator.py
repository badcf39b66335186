"""Streaming evaluation of an autoencoder into one typed ``EvalResult``.

``Evaluator`` accumulates sums and code counts batch by batch (never the whole split in memory);
``evaluate`` streams an image set through it. Validation during training feeds Lightning's
batches to the same ``Evaluator``, so both compute every figure the same way, once: the
estimator (plug-in or Miller-Madow) is applied when the result is built, not afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from depthq.data import ImageSet
from depthq.evaluate.bits import CodePrior, EmpiricalPrior, UniformPrior
from depthq.evaluate.information import CodeStatistics
from depthq.evaluate.result import (
    EvalOptions,
    EvalResult,
    LevelStats,
    Likelihood,
    Rate,
    RunSource,
    psnr,
)
from depthq.models import AutoencoderOutput, HierarchicalAutoencoder

EMA_PRIOR_DESCRIPTION = "code frequencies from the quantizers' EMA counts of recent training batches"


class Evaluator:
    """Accumulates the evaluation figures of one model over a split.

    Args:
        model: the autoencoder (its head decides whether bits/dim exist).
        options: the evaluation's options (``correction`` and ``diagnostics`` matter here).
        priors: priors over the codes besides the uniform one (always measured), e.g. an
            ``EmpiricalPrior``; each gives a ``Rate`` named after it.
    """

    def __init__(self, model: HierarchicalAutoencoder, options: EvalOptions, priors: Sequence[CodePrior] = ()) -> None:
        self.model, self.options = model, options
        config = model.config
        self.priors: list[CodePrior] = [UniformPrior(config.codebook_sizes), *priors]
        names = [p.name for p in self.priors]
        if len(set(names)) != len(names):
            raise ValueError(f"each prior may appear once, got {names}")
        m = config.codebooks_per_level
        full = options.diagnostics
        # joint counts of the M-tuples give the effective information per position; cheap next
        # to the pairwise histograms and entropy maps, so they are always kept (M > 1)
        self.codes = [
            CodeStatistics(m, k, pairwise=full and m > 1, positions=full, joint=m > 1) for k in config.codebook_sizes
        ]
        self.images = 0
        self.dims: int | None = None
        # device accumulators (float64): read back once, in result()
        self._nll: Tensor | None = None
        self._squared_error: Tensor | None = None
        self._colour: Tensor | None = None  # (2, C): sums over images of |per-image channel mean error| and of it
        self._rate_bits: list[Tensor] | None = None
        self._nonfinite: list[Tensor | int] = [0] * config.num_levels  # per level, summed over codebooks

    @torch.no_grad()
    def update(self, x: Tensor, out: AutoencoderOutput | None = None) -> Tensor:
        """Add a uint8 batch (B, C, H, W); ``out`` from the model's forward when already run.

        Returns the uint8 reconstructions (the mean of p(x|z), see ``LikelihoodHead.mean``).
        """
        if out is None:
            out = self.model(x)
        dims = math.prod(x.shape[1:])
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            raise ValueError(f"all images of an evaluation must have {self.dims} dims, got {dims}")
        head = self.model.head
        recon = head.mean(out.params)
        error = recon.double() - x.double()
        squared = error.pow(2).sum()
        self._squared_error = squared if self._squared_error is None else self._squared_error + squared
        # (B, C): each image's mean colour error per channel, quality.per_image_colour_bias's
        # figure from the error already computed for the MSE
        bias = error.mean((2, 3))
        colour = torch.stack([bias.abs().sum(0), bias.sum(0)])
        self._colour = colour if self._colour is None else self._colour + colour
        if head.has_likelihood:
            nll = head.nll(out.params, x).double().sum()
            self._nll = nll if self._nll is None else self._nll + nll
        rates = [prior.rate_bits(out.indices).double().sum() for prior in self.priors]
        self._rate_bits = rates if self._rate_bits is None else [a + b for a, b in zip(self._rate_bits, rates)]
        for stats, z in zip(self.codes, out.indices):
            stats.update(z)
        self._nonfinite = [
            n if level.nonfinite is None else n + level.nonfinite.sum() for n, level in zip(self._nonfinite, out.levels)
        ]
        self.images += x.shape[0]
        return recon

    def result(self, *, data: str, source: RunSource | None = None) -> EvalResult:
        """The figures so far, with the options' estimator applied once."""
        if self.images == 0:
            raise ValueError("no images were evaluated")
        n, dims, squared_error, rate_bits = self.images, self.dims, self._squared_error, self._rate_bits
        if dims is None or squared_error is None or rate_bits is None:
            raise RuntimeError("images were counted but the accumulators were never set (update() sets both)")
        mse = float(squared_error) / (n * dims)
        likelihood = None
        if self.model.head.has_likelihood:
            if self._nll is None:
                raise RuntimeError("the head has a likelihood but no log-likelihood was accumulated")
            likelihood = Likelihood(float(self._nll) / n, dims)
        rates = tuple(Rate(p.name, p.description, float(bits) / n) for p, bits in zip(self.priors, rate_bits))
        levels = tuple(self._level(i, stats) for i, stats in enumerate(self.codes))
        colour = None if self._colour is None else (self._colour / n).tolist()
        return EvalResult(
            images=n,
            dims=dims,
            data=data,
            split=self.options.split,
            precision=self.options.precision,
            mse=mse,
            psnr=psnr(mse),
            likelihood=likelihood,
            rates=rates,
            levels=levels,
            options=self.options,
            source=source,
            colour_bias=None if colour is None else tuple(colour[0]),
            colour_shift=None if colour is None else tuple(colour[1]),
        )

    def _level(self, index: int, stats: CodeStatistics) -> LevelStats:
        correction = self.options.correction
        entropies = stats.entropies(correction)  # (M,)
        used = stats.marginal > 0  # (M, K)
        joint = float(entropies[0]) if stats.num_codebooks == 1 else stats.joint_entropy(correction)
        if stats.spatial_shape is None:
            raise RuntimeError(f"level {index} saw no codes although images were evaluated")
        h, w = stats.spatial_shape
        entropy_map = stats.entropy_map(correction) if stats.positions else None  # (M, h, w)
        return LevelStats(
            level=index,
            codebook_size=stats.codebook_size,
            codebooks=stats.num_codebooks,
            positions=h * w,
            samples=stats.num_samples,
            entropies=tuple(entropies.tolist()),
            perplexities=tuple(entropies.exp().tolist()),
            used_fractions=tuple(used.double().mean(1).tolist()),
            dead_codes=tuple((~used).sum(1).tolist()),
            joint_entropy=joint,
            position_entropy=None if entropy_map is None else float(entropy_map.mean()),
            mutual_information=(
                tuple(tuple(r) for r in stats.mutual_information(correction).tolist()) if stats.pairwise else None
            ),
            entropy_map=None
            if entropy_map is None
            else tuple(tuple(tuple(r) for r in m) for m in entropy_map.tolist()),
            nonfinite=int(self._nonfinite[index]),
        )


def autocast(precision: str, device: torch.device):
    """The autocast context of an evaluation precision ("32": none)."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def _batches(images: ImageSet, indices: Tensor, batch_size: int, desc: str, progress: bool) -> Iterator[Tensor]:
    for start in tqdm(range(0, len(indices), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        yield images.batch(indices[start : start + batch_size])


@torch.no_grad()
def evaluate(
    model: HierarchicalAutoencoder,
    images: ImageSet,
    options: EvalOptions = EvalOptions(),
    *,
    priors: Sequence[CodePrior] = (),
    source: RunSource | None = None,
    progress: bool = False,
) -> EvalResult:
    """Stream ``images`` once through ``model`` (eval mode) and return every figure.

    Example::

        result = evaluate(model, get_dataset("photos", "test"), EvalOptions(correction="miller-madow"))
        result.total("uniform"), result.levels[0].information_bits, result.selection
    """
    model.eval()
    device = next(model.parameters()).device
    evaluator = Evaluator(model, options, priors)
    with autocast(options.precision, device):
        for x in _batches(
            images, torch.arange(len(images)), options.batch_size, f"evaluating {images.split}", progress
        ):
            evaluator.update(x.to(device))
    return evaluator.result(data=images.name, source=source)


@torch.no_grad()
def fit_prior(
    model: HierarchicalAutoencoder,
    train_images: ImageSet,
    options: EvalOptions,
    *,
    seed: int = 0,
    progress: bool = False,
) -> EmpiricalPrior:
    """Empirical prior from the codes of ``options.prior_images`` training images (seeded subset;
    None: all), its description saying so."""
    model.eval()
    device = next(model.parameters()).device
    n = len(train_images)
    limit = options.prior_images
    if limit is not None and n > limit:
        indices = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    else:
        indices = torch.arange(n)
    m = model.config.codebooks_per_level
    counts = [CodeStatistics(m, k, pairwise=False, positions=False, joint=False) for k in model.config.codebook_sizes]
    with autocast(options.precision, device):
        for x in _batches(train_images, indices, options.batch_size, "fitting the empirical prior", progress):
            for stats, z in zip(counts, model.encode(x.to(device))):
                stats.update(z)
    description = f"code frequencies of {len(indices):,} {train_images.name} training images, add-one smoothed"
    return EmpiricalPrior.fit([c.marginal for c in counts], description=description)


def ema_prior(model: HierarchicalAutoencoder) -> EmpiricalPrior:
    """An empirical prior from the quantizers' EMA counts (recent training batches).

    A cheap stand-in for a prior fitted on the whole training split, used during validation.
    """
    return EmpiricalPrior.fit([q.ema_count.detach().cpu() for q in model.quantizers], description=EMA_PRIOR_DESCRIPTION)
