"""Evaluation: typed results, bits/dim accounting and information diagnostics of the codes.

``evaluate(model, images, options) -> EvalResult`` computes every figure once; ``EvalResult``
and ``LevelStats`` are documented in ``depthq.evaluate.result``.

The codec field's conventions: ``quality`` (PSNR, SSIM, MS-SSIM as CompressAI computes them),
``bd`` (BD-rate, BD-PSNR), ``compressai_schema`` (CompressAI's results files) and ``rd``
(whole-image rate-distortion of any codec, Pillow JPEG / WebP anchors); ``figures.rd_curves``.
"""

from depthq.evaluate.bd import bd_psnr, bd_rate
from depthq.evaluate.bits import (
    CodePrior,
    EmpiricalPrior,
    LevelShape,
    UniformPrior,
    bits_per_dim,
    uniform_rate_bits,
)
from depthq.evaluate.compressai_schema import CodecResults, ImageResult, aggregate
from depthq.evaluate.evaluator import Evaluator, ema_prior, evaluate, fit_prior
from depthq.evaluate.information import (
    CodeStatistics,
    entropy,
    mi_bias,
    miller_madow,
    perplexity,
)
from depthq.evaluate.quality import image_psnr, ms_ssim, ms_ssim_db, ssim
from depthq.evaluate.rd import BDComparison, LossyImage, RateDistortion, bd_against, evaluate_lossy, pillow_anchor
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
    "BDComparison",
    "BitsFigure",
    "CodePrior",
    "CodeStatistics",
    "CodecResults",
    "EmpiricalPrior",
    "EvalOptions",
    "EvalResult",
    "Evaluator",
    "ImageResult",
    "LevelShape",
    "LevelStats",
    "Likelihood",
    "LossyImage",
    "Rate",
    "RateDistortion",
    "ResultSection",
    "RunSource",
    "UniformPrior",
    "aggregate",
    "bd_against",
    "bd_psnr",
    "bd_rate",
    "bits_per_dim",
    "ema_prior",
    "entropy",
    "evaluate",
    "evaluate_lossy",
    "fit_prior",
    "image_psnr",
    "mi_bias",
    "miller_madow",
    "ms_ssim",
    "ms_ssim_db",
    "perplexity",
    "pillow_anchor",
    "psnr",
    "register_section",
    "ssim",
    "uniform_rate_bits",
]
