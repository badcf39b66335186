"""The reference rates a learned prior is compared with, on code sequences (N, T, M).

- uniform: log2 K bits per code, ``depthq.evaluate.bits.uniform_rate_bits(layout.level_shapes)``;
- empirical: per-level, per-codebook code frequencies of a training set, add-one smoothed
  (``depthq.evaluate.bits.EmpiricalPrior``, the prior of the ``empirical`` figures).
"""

from __future__ import annotations

import torch
from torch import Tensor

from depthq.evaluate.bits import EmpiricalPrior
from depthq.prior.layout import CodeLayout


def code_counts(sequences: Tensor, layout: CodeLayout) -> list[Tensor]:
    """Per-level counts (M, K_l) int64 of the codes in sequences (N, T, M), bottom level first."""
    counts = []
    for level, z in enumerate(layout.from_sequence(sequences)):  # (N, M, h, w)
        m, k = layout.codebooks, layout.codebook_sizes[level]
        offsets = torch.arange(m, device=z.device).view(1, m, 1, 1) * k
        counts.append(torch.bincount((z + offsets).flatten(), minlength=m * k).view(m, k))
    return counts


def empirical_rate_bits(train: Tensor, evaluated: Tensor, layout: CodeLayout, alpha: float = 1.0) -> Tensor:
    """-log2 p(z) per image (N',) of ``evaluated`` sequences under the empirical prior fitted
    (add-``alpha`` smoothed) on ``train`` sequences; both (N, T, M) int64."""
    prior = EmpiricalPrior.fit(code_counts(train, layout), alpha=alpha)
    return prior.rate_bits(layout.from_sequence(evaluated))
