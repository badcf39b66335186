"""Codebook statistics: batch counts and sums, the EMA update and dead codes.

Pure functions on tensors with codebooks on a leading axis, so that all M codebooks are
handled by one call (spec section 1). Shapes: M codebooks, K codes, D dims, N vectors per
codebook. All statistics are fp32, and nothing here reads a device tensor on the host.

EMA update (soft-EM approximation; van den Oord et al. 2017, appendix), per codebook::

    N_k <- g*N_k + (1-g)*n_k        S_k <- g*S_k + (1-g)*s_k
    n = sum_k N_k                   N~_k = (N_k + eps) / (n + K*eps) * n
    E[k] = S_k / N~_k
"""

from __future__ import annotations

import torch
from torch import Tensor


def code_counts(indices: Tensor, codebook_size: int, valid: Tensor | None = None) -> Tensor:
    """Vectors assigned to each code: (M, N) int64 -> (M, K) fp32.

    A scatter-add of ones, not ``torch.bincount``: on CUDA bincount reads the largest index on
    the host to size its output, a synchronisation per step. Sums of ones are exact in any
    order, so the result is deterministic on every device. ``valid`` (M, N) bool: count only
    those vectors (masked positions add nothing).
    """
    m = indices.shape[0]
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * codebook_size
    flat = (indices + offsets).reshape(-1)
    counts = torch.zeros(m * codebook_size, device=indices.device)
    if valid is None:
        counts.scatter_add_(0, flat, torch.ones((), device=indices.device).expand(flat.shape))
    else:
        counts.scatter_add_(0, flat, valid.reshape(-1).float())
    return counts.view(m, codebook_size)


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


def sample_vectors(x: Tensor, count: int, noise: float = 1e-3, valid: Tensor | None = None) -> Tensor:
    """``count`` random vectors of each codebook's batch, plus a little noise.

    (M, N, D) -> (M, count, D). Draws with replacement, so it works when N < count; the noise
    (``noise`` times the draws' RMS) keeps codes drawn twice from being exact ties.
    ``valid`` (M, N) bool: draw only among those vectors (uniformly, by inverse CDF over their
    running count); a codebook with none draws zeros.
    """
    m, n, d = x.shape
    if n == 0:  # an empty batch (e.g. one rank's share) draws nothing
        return x.new_zeros(m, count, d)
    if valid is None:
        picks = torch.randint(0, n, (m, count), device=x.device)
        out = x.gather(1, picks.unsqueeze(-1).expand(m, count, d))  # (M, count, D)
        scale = out.pow(2).mean().sqrt() * noise  # RMS of the draws, not a pass over all of x
        return out.add_(torch.randn_like(out) * scale)
    available = valid.sum(-1, keepdim=True)  # (M, 1) int64
    running = valid.long().cumsum(-1)  # (M, N): valid vectors up to and including each one
    # the j-th valid vector (j uniform in [0, available)) is the first with running > j
    j = (torch.rand(m, count, device=x.device) * available).long()
    j = torch.minimum(j, (available - 1).clamp(min=0))  # u * n may round up to n
    picks = torch.searchsorted(running, j, right=True).clamp_(max=n - 1)  # (M, count)
    out = x.gather(1, picks.unsqueeze(-1).expand(m, count, d))
    has = (available > 0).unsqueeze(-1)  # (M, 1, 1)
    out = torch.where(has, out, 0.0)  # where, not a product: a masked vector may be NaN
    drawn = has.sum() * (count * d)
    scale = (out.pow(2).sum() / drawn.clamp(min=1)).sqrt() * noise
    return torch.where(has, out + torch.randn_like(out) * scale, 0.0)


def dead_code_mask(ema_count: Tensor, eps: float, threshold: float) -> Tensor:
    """(M, K) bool: codes whose smoothed EMA count is below ``threshold``."""
    return smoothed_counts(ema_count, eps) < threshold
