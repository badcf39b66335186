"""Codebook statistics: batch counts and sums, the EMA update, dead codes and k-means.

Pure functions on tensors with codebooks on a leading axis, so that all M codebooks are
handled by one call (spec section 1). Shapes: M codebooks, K codes, D dims, N vectors per
codebook. All statistics are fp32.

EMA update (soft-EM approximation; van den Oord et al. 2017, appendix), per codebook::

    N_k <- g*N_k + (1-g)*n_k        S_k <- g*S_k + (1-g)*s_k
    n = sum_k N_k                   N~_k = (N_k + eps) / (n + K*eps) * n
    E[k] = S_k / N~_k
"""

from __future__ import annotations

import torch
from torch import Tensor

from depthq.quantize import distributed
from depthq.quantize.search import nearest_codes


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """Vectors assigned to each code: (M, N) int64 -> (M, K) fp32."""
    m = indices.shape[0]
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * codebook_size
    flat = (indices + offsets).reshape(-1)
    return torch.bincount(flat, minlength=m * codebook_size).view(m, codebook_size).float()


def code_sums(x: Tensor, indices: Tensor, codebook_size: int) -> Tensor:
    """Sum of the vectors assigned to each code: (M, N, D), (M, N) -> (M, K, D)."""
    m, _, d = x.shape
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * codebook_size
    flat = (indices + offsets).reshape(-1)
    sums = torch.zeros(m * codebook_size, d, dtype=torch.float32, device=x.device)
    sums.index_add_(0, flat, x.reshape(-1, d).float())
    return sums.view(m, codebook_size, d)


def smoothed_counts(ema_count: Tensor, eps: float) -> Tensor:
    """Laplace-smoothed counts N~ (M, K): no code has a zero divisor, totals are kept."""
    k = ema_count.shape[-1]
    n = ema_count.sum(-1, keepdim=True)  # (M, 1)
    return (ema_count + eps) / (n + k * eps) * n


def sample_vectors(x: Tensor, count: int, noise: float = 1e-3) -> Tensor:
    """``count`` random vectors of each codebook's batch, plus a little noise.

    (M, N, D) -> (M, count, D). Draws with replacement, so it works when N < count; the noise
    (``noise`` times the draws' RMS) keeps codes drawn twice from being exact ties.
    """
    m, n, d = x.shape
    if n == 0:  # an empty batch (e.g. one rank's share) draws nothing
        return x.new_zeros(m, count, d)
    picks = torch.randint(0, n, (m, count), device=x.device)
    out = x.gather(1, picks.unsqueeze(-1).expand(m, count, d))  # (M, count, D)
    scale = out.pow(2).mean().sqrt() * noise  # RMS of the draws, not a pass over all of x
    return out.add_(torch.randn_like(out) * scale)


def shared_sample_vectors(x: Tensor, count: int) -> Tensor:
    """:func:`sample_vectors` made identical on every rank: one rank draws each row.

    Each code k is drawn by rank (k mod world_size) from its own batch; the other ranks
    contribute zeros, and a sum over ranks gives everyone the same (M, count, D) draws.
    """
    draws = sample_vectors(x, count)
    if distributed.world_size() > 1:
        draws = draws * distributed.owner_mask(count, x.device).view(1, count, 1)
        distributed.all_reduce_sum_(draws)
    return draws


def dead_code_mask(ema_count: Tensor, eps: float, threshold: float) -> Tensor:
    """(M, K) bool: codes whose smoothed EMA count is below ``threshold``."""
    return smoothed_counts(ema_count, eps) < threshold


@torch.no_grad()
def kmeans(x: Tensor, codebook_size: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means for M codebooks at once, synchronised across ranks.

    Args:
        x: (M, N, D) fp32 vectors of this rank.
        codebook_size: K.
        iters: Lloyd iterations.

    Returns:
        centroids (M, K, D) and the counts (M, K) of the last assignment, over all ranks.
        A cluster that empties keeps its previous centroid.
    """
    centroids = shared_sample_vectors(x, codebook_size)
    counts = torch.zeros(x.shape[0], codebook_size, device=x.device)
    for _ in range(iters):
        idx = nearest_codes(x, centroids)
        counts = code_counts(idx, codebook_size)
        sums = code_sums(x, idx, codebook_size)
        distributed.all_reduce_sum_(counts, sums)
        means = sums / counts.clamp(min=1.0).unsqueeze(-1)
        centroids = torch.where(counts.unsqueeze(-1) > 0, means, centroids)
    return centroids, counts
