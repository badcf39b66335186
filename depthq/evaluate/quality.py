"""Image quality of a decoded uint8 image against its original: PSNR, SSIM and MS-SSIM.

The conventions are those of CompressAI's ``eval_model`` and ``bench`` (the figures in its
published results files), so numbers computed here sit on the same axes as theirs:

- **PSNR** = 10 log10(255^2 / MSE), the MSE over all C*H*W sub-pixels of one image (dB);
  ``inf`` for identical images. A data set's figure is the mean of the images' PSNRs.
- **SSIM** (Wang et al. 2004) and **MS-SSIM** (Wang, Simoncelli and Bovik 2003) from the
  ``pytorch-msssim`` package, the one CompressAI calls: Gaussian window of 11 pixels and sigma
  1.5, K1 = 0.01, K2 = 0.03, data range 255, no padding (the window stays inside the image);
  MS-SSIM over 5 scales with the weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), each scale
  halved by 2x2 average pooling. Both are computed per channel and averaged over the channels
  (greyscale: the one channel, which equals the value of the image replicated to RGB).
  Computed in float64 (CompressAI runs float32, whose rounding moves MS-SSIM by about 1e-5).
  An odd side is pooled with the package's zero padding (as CompressAI's figures are).

**Sizes.** SSIM needs both sides >= 11 (one window). MS-SSIM halves the image 4 times and still
needs a window at the coarsest scale: both sides must be over 160 pixels (``MS_SSIM_MIN_SIDE``
= 161). For smaller images ``ssim`` / ``ms_ssim`` return None and ``ssim_unavailable`` /
``ms_ssim_unavailable`` say why, instead of an assertion deep inside the package.

Why pytorch-msssim and not torchmetrics (installed with lightning): CompressAI's published
MS-SSIM figures come from pytorch-msssim, and torchmetrics' MS-SSIM is a different number on
the same images (its coarsest scale averages SSIM over reflection-padded borders, it averages
the channels before combining the scales, pools odd sides without padding, and refuses sides
under 176; ``tests/evaluate/test_quality.py`` shows the difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_msssim
import torch

from depthq.evaluate.result import psnr

WINDOW = 11  # SSIM's Gaussian window, pixels
SIGMA = 1.5  # its standard deviation, pixels
SCALES = 5  # MS-SSIM's scales: the image and 4 halvings
MS_SSIM_MIN_SIDE = (WINDOW - 1) * 2 ** (SCALES - 1) + 1  # 161: a window must fit the coarsest scale
PEAK = 255.0


def _as_image(x: Any, what: str) -> torch.Tensor:
    """uint8 (C, H, W), C = 1 or 3, numpy or torch -> a float64 torch tensor (1, C, H, W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[0] not in (1, 3) or 0 in x.shape:
        raise ValueError(f"{what}: expected a uint8 image (C, H, W) with C = 1 or 3; got {x.dtype} {x.shape}")
    return torch.tensor(x, dtype=torch.float64)[None]  # a copy: the array may be read-only


def _pair(reference: Any, decoded: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_image(reference, "reference"), _as_image(decoded, "decoded")
    if a.shape != b.shape:
        raise ValueError(
            f"the decoded image must have the reference's shape {tuple(a.shape[1:])}; got {tuple(b.shape[1:])}"
        )
    return a, b


def _window(channels: int) -> torch.Tensor:
    """The Gaussian window (sigma 1.5) as pytorch-msssim builds it, but in float64 (its own is
    float32, whose rounding alone moves MS-SSIM by about 1e-6): (C, 1, 1, 11)."""
    taps = torch.exp(-((torch.arange(WINDOW, dtype=torch.float64) - WINDOW // 2) ** 2) / (2 * SIGMA**2))
    return (taps / taps.sum()).repeat(channels, 1, 1, 1)


def image_psnr(reference: Any, decoded: Any) -> float:
    """PSNR (dB) of ``decoded`` against ``reference``, both uint8 (C, H, W): the MSE over all
    C*H*W sub-pixels, peak 255; ``inf`` if they are identical."""
    a, b = _pair(reference, decoded)
    return psnr(float(((a - b) ** 2).mean()), PEAK)


def ssim_unavailable(height: int, width: int) -> str | None:
    """Why SSIM cannot be computed on an image of ``height`` x ``width`` pixels, or None if it can."""
    if min(height, width) < WINDOW:
        return f"SSIM needs both sides >= {WINDOW} (its window); the image is {height}x{width}"
    return None


def ms_ssim_unavailable(height: int, width: int) -> str | None:
    """Why MS-SSIM (5 scales) cannot be computed on an image of ``height`` x ``width`` pixels, or None."""
    if min(height, width) < MS_SSIM_MIN_SIDE:
        return (
            f"MS-SSIM with {SCALES} scales needs both sides > {MS_SSIM_MIN_SIDE - 1} pixels (an {WINDOW}-pixel "
            f"window at 1/{2 ** (SCALES - 1)} scale); the image is {height}x{width}"
        )
    return None


def ssim(reference: Any, decoded: Any) -> float | None:
    """SSIM of ``decoded`` against ``reference`` (uint8 (C, H, W)), in [-1, 1], 1 for identical
    images; the mean over the channels. None if a side is under 11 pixels (``ssim_unavailable``)."""
    a, b = _pair(reference, decoded)
    if ssim_unavailable(*a.shape[2:]):
        return None
    return float(pytorch_msssim.ssim(a, b, data_range=PEAK, win=_window(a.shape[1]), size_average=True))


def ms_ssim(reference: Any, decoded: Any) -> float | None:
    """MS-SSIM (5 scales) of ``decoded`` against ``reference`` (uint8 (C, H, W)), in [0, 1], 1 for
    identical images; per channel, then the mean over the channels (CompressAI's "ms-ssim-rgb").
    None if a side is 160 pixels or less (``ms_ssim_unavailable`` gives the reason)."""
    a, b = _pair(reference, decoded)
    if ms_ssim_unavailable(*a.shape[2:]):
        return None
    return float(pytorch_msssim.ms_ssim(a, b, data_range=PEAK, win=_window(a.shape[1]), size_average=True))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on CompressAI's plotting scale: -10 log10(1 - value) dB; ``inf`` at 1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"an MS-SSIM value lies in [0, 1]; got {value}")
    return math.inf if value == 1.0 else -10.0 * math.log10(1.0 - value)


@dataclass(frozen=True)
class ColourBias:
    """How far the mean colour of each decoded image is from its original's, per channel.

    For image n and channel c, the bias b_nc = mean over the pixels of (decoded - original), in
    levels of 0..255. ``mean_abs[c]`` = mean over the images of |b_nc| (a tint in either
    direction counts); ``mean[c]`` = mean of b_nc (a tint shared by the images: the set's
    palette drifting one way). A reconstruction with the right local detail but a tinted patch
    shows here, not in PSNR alone.
    """

    mean_abs: tuple[float, ...]
    mean: tuple[float, ...]
    images: int

    def worst(self) -> float:
        """The largest per-channel mean absolute bias."""
        return max(self.mean_abs)

    def to_dict(self) -> dict[str, Any]:
        return {"mean_abs": list(self.mean_abs), "mean": list(self.mean), "images": self.images}


def per_image_colour_bias(reference: Any, decoded: Any) -> torch.Tensor:
    """(N, C) float64: each image's mean of (decoded - original) per channel; uint8 (N, C, H, W)
    batches (or one (C, H, W) image) of equal shapes."""
    ref, dec = (torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x) for x in (reference, decoded))
    if ref.shape != dec.shape or ref.dtype != torch.uint8 or dec.dtype != torch.uint8 or ref.dim() not in (3, 4):
        raise ValueError(
            f"expected two uint8 (N, C, H, W) or (C, H, W) images of one shape, got {ref.dtype} {tuple(ref.shape)} "
            f"and {dec.dtype} {tuple(dec.shape)}"
        )
    if ref.dim() == 3:
        ref, dec = ref[None], dec[None]
    return (dec.double() - ref.double()).mean((2, 3))


def colour_bias(reference: Any, decoded: Any) -> ColourBias:
    """The ``ColourBias`` of decoded images against their originals (uint8 (N, C, H, W))."""
    bias = per_image_colour_bias(reference, decoded)
    return ColourBias(
        tuple(float(v) for v in bias.abs().mean(0)), tuple(float(v) for v in bias.mean(0)), int(bias.shape[0])
    )
