"""Evaluation: bits/dim accounting and information diagnostics of the codes."""

from depthq.evaluate.bits import (
    LABELS,
    EmpiricalPrior,
    LevelShape,
    bits_per_dim,
    summary,
    uniform_rate_bits,
)
from depthq.evaluate.evaluator import Evaluator, ema_prior, psnr
from depthq.evaluate.information import (
    CodeStatistics,
    entropy,
    mi_bias,
    miller_madow,
    perplexity,
)

__all__ = [
    "LABELS",
    "CodeStatistics",
    "EmpiricalPrior",
    "Evaluator",
    "LevelShape",
    "bits_per_dim",
    "ema_prior",
    "entropy",
    "mi_bias",
    "miller_madow",
    "perplexity",
    "psnr",
    "summary",
    "uniform_rate_bits",
]
