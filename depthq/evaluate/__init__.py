"""Evaluation: typed results, bits/dim accounting and information diagnostics of the codes.

``evaluate(model, images, options) -> EvalResult`` computes every figure once; ``EvalResult``
and ``LevelStats`` are documented in ``depthq.evaluate.result``.
"""

from depthq.evaluate.bits import (
    CodePrior,
    EmpiricalPrior,
    LevelShape,
    UniformPrior,
    bits_per_dim,
    uniform_rate_bits,
)
from depthq.evaluate.evaluator import Evaluator, ema_prior, evaluate, fit_prior
from depthq.evaluate.information import (
    CodeStatistics,
    entropy,
    mi_bias,
    miller_madow,
    perplexity,
)
from depthq.evaluate.result import (
    BitsFigure,
    EvalOptions,
    EvalResult,
    LevelStats,
    Likelihood,
    Rate,
    ResultSection,
    RunSource,
    psnr,
    register_section,
)

__all__ = [
    "BitsFigure",
    "CodePrior",
    "CodeStatistics",
    "EmpiricalPrior",
    "EvalOptions",
    "EvalResult",
    "Evaluator",
    "LevelShape",
    "LevelStats",
    "Likelihood",
    "Rate",
    "ResultSection",
    "RunSource",
    "UniformPrior",
    "bits_per_dim",
    "ema_prior",
    "entropy",
    "evaluate",
    "fit_prior",
    "mi_bias",
    "miller_madow",
    "perplexity",
    "psnr",
    "register_section",
    "uniform_rate_bits",
]
