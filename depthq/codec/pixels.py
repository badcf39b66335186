"""Coding sub-pixels under p(x|z) as 8 binary decisions, from the likelihood head's CDF.

A sub-pixel value v in 0..255 is coded by its bits, most significant first: at depth d the
value is known to lie in [lo, lo + 2^(8-d)) and the decision is whether it lies in the upper
half, from ``mid = lo + 2^(7-d)``:

    p(upper) = mass[mid, hi) / mass[lo, hi)

The product of the 8 decisions' probabilities is p(v) exactly (it telescopes), so the code
length is still -log2 p(x|z); but coding needs the CDF at 8 edges per sub-pixel, not the 256
masses of every value (for the dmol head: 10 logistic CDFs at 8 edges instead of 255). The
decoder finds the same edges from the bits it has decoded.

Masses come from two running sums per edge: F = mass below the edge and S = mass at and above it.
Where an interval lies in the upper tail (F(mid) > S(mid)) the masses are differences of S, so
they keep their relative precision in fp32 on both tails. Each decision becomes integer
frequencies ``floor(p * (2^24 - 2)) + 1`` in float64 numpy (at least one count each way).

Determinism: ``code_values`` runs the same tensor operations at the same shapes in the encoder
and the decoder, its inputs (params, the channels decoded so far, the bits decided so far) being
equal; only where the bits come from differs (``choose``).

Shapes: params (B, P, t, t); P = B*t*t sub-pixels of one channel per call, row-major per tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from depthq.models.heads import PIXEL_VALUES, normalise

BITS = 8  # decisions per sub-pixel: 256 values
FREQUENCY_TOTAL = 2**24  # as the coder's categorical models
_TINY_WIDTH = 1e-6  # bin widths (in scales) below which log(1 - e^-d) is taken as log d


class PixelCDF(Protocol):
    """One channel's distribution for P sub-pixels, read at edges."""

    def at(self, edge: Tensor) -> tuple[Tensor, Tensor]:
        """edge (P,) int64 in 1..255 -> (F, S), (P,) fp32 each: the mass of the values below
        ``edge`` and of the values at or above it."""
        ...


class MixtureCDF:
    """A dmol channel: per sub-pixel a mixture of n logistics (weights, means, inverse scales,
    each (P, n) fp32). The edge below value j is (2j - 256) / 255 (as the head's bins)."""

    def __init__(self, weights: Tensor, mean: Tensor, inv_s: Tensor) -> None:
        self.weights, self.mean, self.inv_s = weights, mean, inv_s

    def at(self, edge: Tensor) -> tuple[Tensor, Tensor]:
        e = ((2 * edge - 256).float() / 255.0).unsqueeze(1)  # (P, 1)
        arg = (e - self.mean) * self.inv_s  # (P, n)
        below = (self.weights * torch.sigmoid(arg)).sum(1)
        above = (self.weights * torch.sigmoid(-arg)).sum(1)
        return below, above


class TableCDF:
    """A categorical channel: cumulative sums of its 256 probabilities (P, 256) fp32."""

    def __init__(self, probs: Tensor) -> None:
        self.below = probs.cumsum(1)  # [:, j - 1]: mass of values < j
        self.above = probs.flip(1).cumsum(1).flip(1)  # [:, j]: mass of values >= j

    def at(self, edge: Tensor) -> tuple[Tensor, Tensor]:
        e = edge.unsqueeze(1)
        return self.below.gather(1, e - 1)[:, 0], self.above.gather(1, e)[:, 0]


def _log_bin_mass(a: Tensor, b: Tensor, log_scales: Tensor, level: Tensor) -> Tensor:
    """log(sigmoid(a) - sigmoid(b)) per bin, stably, with open edge bins (the dmol head's
    formula): a, b the bin's upper and lower edge in scales; level the integer value."""
    d = a - b
    log_d = torch.where(
        d > _TINY_WIDTH, torch.log(-torch.expm1(-d.clamp(min=_TINY_WIDTH))), math.log(2.0 / 255.0) - log_scales
    )
    below_a, above_b = F.logsigmoid(a), F.logsigmoid(-b)
    top = torch.where(level == PIXEL_VALUES - 1, above_b, below_a + above_b + log_d)
    return torch.where(level == 0, below_a, top)


def _flat(t: Tensor) -> Tensor:
    """(B, n, H, W) -> (B*H*W, n) contiguous."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).contiguous()


def mixture_cdf(head, params: Tensor, known: Tensor, channel: int) -> MixtureCDF:
    """Channel ``channel`` of a dmol head given the values ``known`` (B, >= channel, H, W) uint8
    of the channels before it, as ``DMoLHead.channel_probs`` defines it: the mixture weights
    conditioned on the known channels, each component's mean coupled to them."""
    mix = head.split(params.float())
    log_w = F.log_softmax(mix.logits, dim=1)  # (B, n, H, W)
    mean = mix.means[:, channel]
    if channel > 0:
        x = known[:, :channel]
        values = normalise(x)  # (B, c, H, W)
        coupled = torch.einsum("bjinhw,bihw->bjnhw", mix.coupling[:, :channel, :channel], values)
        means = mix.means[:, :channel] + coupled  # (B, c, n, H, W)
        level = x.long().unsqueeze(2)  # (B, c, 1, H, W)
        upper = (2 * level - 254).float() / 255.0
        lower = (2 * level - 256).float() / 255.0
        log_scales = mix.log_scales[:, :channel]
        inv = torch.exp(-log_scales)
        log_p = _log_bin_mass(inv * (upper - means), inv * (lower - means), log_scales, level)
        log_w = F.log_softmax(log_w + log_p.sum(1), dim=1)
        mean = mean + torch.einsum("binhw,bihw->bnhw", mix.coupling[:, channel, :channel], values)
    inv_s = torch.exp(-mix.log_scales[:, channel])
    return MixtureCDF(_flat(log_w.exp()), _flat(mean), _flat(inv_s))


def pixel_cdf(head, params: Tensor, known: Tensor, channel: int) -> PixelCDF:
    """The CDF of channel ``channel`` of every sub-pixel given the channels before it, for the
    likelihood heads that have one (dmol: ``MixtureCDF``; categorical: ``TableCDF``)."""
    if head.name == "dmol":
        return mixture_cdf(head, params, known, channel)
    probs = head.channel_probs(params, known, channel)  # (B, 256, H, W)
    return TableCDF(probs.permute(0, 2, 3, 1).reshape(-1, PIXEL_VALUES).contiguous())


def binary_frequencies(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Masses of the two halves (P,) float64 -> integer frequencies (P, 2) float64, each >= 1,
    summing to at most 2^24; a pair with no mass (or not finite) gets even odds."""
    m = np.stack([below, above], 1)
    np.nan_to_num(m, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(m, 0.0, None, out=m)
    total = m.sum(1, keepdims=True)
    empty = total[:, 0] <= 0.0
    m[empty] = 1.0
    total[empty] = 2.0
    f = np.multiply(m, (FREQUENCY_TOTAL - 2) / total)
    np.floor(f, out=f)
    f += 1.0
    return f


def code_values(cdf: PixelCDF, count: int, choose: Callable[[int, np.ndarray], np.ndarray]) -> Tensor:
    """Run the 8 decisions of ``count`` sub-pixels; ``choose(depth, freqs (P, 2)) -> bits (P,)
    bool`` codes or decodes each depth's decisions. Returns the values (P,) int64."""
    lo = torch.zeros(count, dtype=torch.int64)
    f_lo, s_lo = np.zeros(count), np.ones(count)
    f_hi, s_hi = np.ones(count), np.zeros(count)
    for depth in range(BITS):
        mid = lo + (PIXEL_VALUES >> (depth + 1))
        f, s = cdf.at(mid)
        f_mid, s_mid = f.double().numpy(), s.double().numpy()
        tail = f_mid > s_mid  # the upper tail: differences of S keep their precision
        below = np.where(tail, s_lo - s_mid, f_mid - f_lo)
        above = np.where(tail, s_mid - s_hi, f_hi - f_mid)
        bits = choose(depth, binary_frequencies(below, above))
        lo = torch.where(torch.from_numpy(bits), mid, lo)
        f_lo, s_lo = np.where(bits, f_mid, f_lo), np.where(bits, s_mid, s_lo)
        f_hi, s_hi = np.where(bits, f_hi, f_mid), np.where(bits, s_hi, s_mid)
    return lo
