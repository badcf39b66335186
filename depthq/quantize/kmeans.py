"""k-means for M codebooks at once: k-means++ seeding, then Lloyd's iterations.

Shapes: M codebooks, K codes, D dims, N vectors per codebook (this rank's share), S seeding
samples per codebook. Every function here is synchronised across ranks when torch.distributed
is initialised, and every rank enters every collective whatever its share of the batch (an
empty share included), so no rank can wait on another. None of them reads a device tensor on
the host.

Seeding is k-means++ (Arthur & Vassilvitskii, 2007): the first code is a random vector, each
next one a vector drawn with probability proportional to its squared distance to the nearest
code chosen so far. It runs on a bounded weighted sample of the global batch (S = max(256, 4K)
vectors per codebook, each standing for the share of its rank it was drawn from), vectorised
over the M codebooks and sequential over the K codes. Its random numbers are drawn before the
loop and shared with the sample, so every rank picks the same seeds. Lloyd's iterations then
run on every rank's whole share, with the statistics all-reduced.
"""

from __future__ import annotations

import torch
from torch import Tensor

from depthq.quantize import codebook as cb
from depthq.quantize import distributed
from depthq.quantize.search import nearest_codes

#: Seeding samples per code (S = max(SEED_SAMPLES_MIN, SEED_SAMPLES_PER_CODE * K)).
SEED_SAMPLES_PER_CODE = 4
SEED_SAMPLES_MIN = 256


def shared_seed_sample(x: Tensor, rows: int, draws: int, valid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A weighted sample of the global batch and uniform draws, identical on every rank.

    Row s of the sample is drawn (with replacement) by rank s mod world_size from its own
    share and weighted by share size / rows that rank drew, so the weighted sample stands for
    the concatenated batch; a rank with no vectors gives its rows weight 0. The (M, draws)
    uniforms in [0, 1) are drawn the same way, column j by rank j mod world_size. Everything
    travels in one all-reduce. ``valid`` (M, N) bool: sample only those vectors (the share
    size is then their number, per codebook).

    Returns:
        samples (M, rows, D), weights (rows,) (with ``valid``: (M, rows)), uniforms (M, draws).
    """
    m, n, d = x.shape
    owner = distributed.owner_mask(rows, x.device)  # (rows,) 1 where this rank draws the row
    if valid is not None:
        samples = cb.sample_vectors(x, rows, noise=0.0, valid=valid) * owner.view(1, rows, 1)
        available = valid.sum(-1, keepdim=True).float()  # (M, 1) this rank's valid vectors
        weights = owner * (available / owner.sum().clamp(min=1.0))  # (M, rows)
    else:
        if n:
            picks = torch.randint(0, n, (m, rows), device=x.device)
            samples = x.gather(1, picks.unsqueeze(-1).expand(m, rows, d)) * owner.view(1, rows, 1)
        else:
            samples = x.new_zeros(m, rows, d)
        weights = owner * (n / owner.sum().clamp(min=1.0))  # (rows,)
    uniforms = torch.rand(m, draws, device=x.device) * distributed.owner_mask(draws, x.device)
    distributed.all_reduce_sum_(samples, weights, uniforms)
    return samples, weights, uniforms


def kmeans_plus_plus(samples: Tensor, weights: Tensor, uniforms: Tensor) -> Tensor:
    """k-means++ seeds from a weighted sample: (M, S, D), (S,) or (M, S), (M, K) -> (M, K, D).

    Seed j of codebook m is the sample at which the running sum of weight x squared distance
    to the nearest earlier seed first exceeds uniforms[m, j] times its total (inverse CDF, in
    fp64 so that small masses are not lost), so the function is deterministic given its
    inputs and never picks a sample of weight 0. When every sample of weight > 0 coincides
    with a seed (fewer distinct vectors than K), the next seed is drawn by weight alone and
    duplicates one; Lloyd's iterations leave duplicates empty and the quantizer's dead-code
    replacement moves them later. About fifteen small tensor operations per code.
    """
    m, s, d = samples.shape
    k = uniforms.shape[1]
    samples_t = samples.transpose(1, 2).contiguous()  # (M, D, S): one row-times-matrix per seed
    sq_norms = samples.pow(2).sum(-1)  # (M, S)
    weight_cdf = weights.double().cumsum(-1).expand(m, s).contiguous()  # (M, S), the fallback
    uniforms = uniforms.double()
    seeds = samples.new_empty(m, k, d)
    dist = torch.full_like(sq_norms, float("inf"))  # (M, S) squared distance to nearest seed
    cdf = weight_cdf
    for j in range(k):
        if j:
            cdf = torch.cumsum(dist * weights, -1, dtype=torch.float64)
            cdf = torch.where(cdf[:, -1:] > 0, cdf, weight_cdf)
        # the first s with cdf[s] > u * total: never a zero-mass sample, always < S (u < 1)
        pick = torch.searchsorted(cdf, uniforms[:, j : j + 1] * cdf[:, -1:], right=True)  # (M, 1)
        pick.clamp_(max=s - 1)  # only a codebook with no vector at all (total weight 0) needs it
        seed = samples.gather(1, pick.unsqueeze(-1).expand(m, 1, d))  # (M, 1, D)
        seeds[:, j : j + 1] = seed
        # ||s - c||^2 = ||s||^2 + ||c||^2 - 2 c.s, clamped at 0 against rounding
        base = (sq_norms + sq_norms.gather(1, pick)).unsqueeze(1)  # (M, 1, S)
        new = torch.baddbmm(base, seed, samples_t, alpha=-2.0).view(m, s).clamp_(min=0.0)
        dist = torch.minimum(dist, new)
    return seeds


@torch.no_grad()
def kmeans(
    x: Tensor, codebook_size: int, iters: int, search: str = "auto", valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """k-means++ seeding and Lloyd's iterations for M codebooks at once, over all ranks.

    Args:
        x: (M, N, D) fp32 finite vectors of this rank (N may be 0 on some ranks, not all).
        codebook_size: K.
        iters: Lloyd iterations.
        search: nearest-code backend for the assignments (see :mod:`depthq.quantize.search`).
        valid: (M, N) bool, or None for all: cluster only these vectors (the others, e.g.
            masked padding, may hold anything, NaN included). Every codebook needs at least
            one valid vector over all ranks.

    Returns:
        centroids (M, K, D) and the counts (M, K) of the last assignment, over all ranks; the
        same on every rank. A cluster that empties keeps its previous centroid.
    """
    rows = max(SEED_SAMPLES_MIN, SEED_SAMPLES_PER_CODE * codebook_size)
    samples, weights, uniforms = shared_seed_sample(x, rows, codebook_size, valid)
    centroids = kmeans_plus_plus(samples, weights, uniforms)
    counts = torch.zeros(x.shape[0], codebook_size, device=x.device)
    kept = x if valid is None else torch.where(valid.unsqueeze(-1), x, 0.0)
    for _ in range(iters):
        idx = nearest_codes(kept, centroids, search=search)
        counts = cb.code_counts(idx, codebook_size, valid)
        sums = cb.code_sums(kept, idx, codebook_size)
        distributed.all_reduce_sum_(counts, sums)
        means = sums / counts.clamp(min=1.0).unsqueeze(-1)
        centroids = torch.where(counts.unsqueeze(-1) > 0, means, centroids)
    return centroids, counts
