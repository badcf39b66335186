"""Typed, validated configuration of the hierarchical autoencoder, and its presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from depthq.presets import MODELS
from depthq.quantize.search import SEARCH_BACKENDS

QUANTIZERS = ("dq", "vq", "coupled")
#: Upper bounds of the structural settings, far above any model that fits a GPU: a config (or a
#: damaged or crafted run record) past them is refused before anything is computed from it.
MAX_SIZES = {
    "image_channels": 4,
    "image_size": 2**16,
    "channels": 2**16,
    "res_channels": 2**16,
    "num_codebooks": 2**12,
    "code_dim": 2**14,
    "mixtures": 256,
    "coder_blocks": 16,
    "res_blocks": 256,
    "levels": 16,
    "codebook_size": 2**20,
}
HEAD_NAMES = ("categorical", "dmol", "mse")
COMMITMENTS = ("mean", "sum")


@dataclass
class ModelConfig:
    """Architecture and quantizer settings of DQ-AE / VQ-VAE (shared/spec.md section 3).

    The defaults are the official code's default configuration. A DQ-AE and a VQ-VAE built
    from the same config differ only in ``quantizer``.
    """

    image_channels: int = 3
    """C of the images: 3 (RGB) or 1 (greyscale)."""
    image_size: int = 32
    """Training image side; must be a multiple of ``total_stride``. The model is fully
    convolutional and runs at any size that is (e.g. 32, then 64)."""
    channels: int = 256
    """Width of every encoder/decoder stage ("channel" in the official code)."""
    res_channels: int = 256
    """Hidden width of the residual blocks."""
    res_blocks: int = 3
    """Residual blocks per encoder/decoder."""
    coder_blocks: int = 2
    """Encoders stacked at the bottom level (each after the first halves the resolution)."""
    stride: int = 2
    """Downsampling of the first encoder: 2 or 4."""
    codebook_sizes: list[int] = field(default_factory=lambda: [32, 32, 32])
    """Codebook size K of each hierarchy level, bottom (finest) to top (coarsest); its length is
    the number of levels."""
    num_codebooks: int = 5
    """M: codebooks per level (slices of the channel axis)."""
    code_dim: int = 64
    """D: dimension of each code."""
    quantizer: str = "dq"
    """"dq": M codebooks on M channel slices (DQ-AE); "vq": one codebook of M*D-dim codes
    (VQ-VAE); "coupled": the official baseline, M codebooks on one shared D-dim projection."""
    head: str = "dmol"
    """Likelihood head: "categorical", "dmol" (discretized logistic mixture) or "mse"."""
    mixtures: int = 10
    """Logistic mixture components of the dmol head."""
    beta: float = 0.25
    """Commitment loss weight."""
    commitment: str = "mean"
    """How the commitment ||x - sg(q)||^2 is normalised: "mean" over every element of the level
    (depthq), or "sum" of each codebook's mean over its codebooks (the official code: ``beta``
    weighs M times more for M codebooks)."""
    mse_weight: float = 0.0
    """Weight of an auxiliary squared error between the head's expected image
    (``head.expected``, normalised to [-1, 1]) and the input, added to the likelihood in the
    training loss: it trains the mean of p(x|z) as a reconstruction. 0: the likelihood alone (the
    paper). Ignored by the mse head, whose loss already is that error."""
    decay: float = 0.99
    """EMA decay of the codebooks."""
    dead_code_threshold: float = 1.0
    """Re-initialise codes whose smoothed EMA count is below this (0: never)."""
    kmeans_init: bool = False
    """Initialise the codebooks by k-means on the first training batch."""
    learning: str = "ema"
    """"ema" codebooks (the paper) or "gradient"."""
    search: str = "auto"
    """Nearest-code search backend of the quantizers: "auto", "torch" or "triton" (a fused CUDA
    kernel, needs the triton package); all give the same codes (``depthq.quantize.search``)."""
    continuous: bool = False
    """An ablation, not a codec: the decoder (and the level below) read each level's continuous
    projection instead of its codes (a bottleneck of the same shape without quantization), and
    the quantizers' losses are left out of training. The codes are still computed and counted,
    but they do not describe what is decoded: a continuous model has no rate, and the prior and
    the codec refuse it. It measures the network's own ceiling under the same recipe and budget."""

    def __post_init__(self) -> None:
        self.codebook_sizes = list(self.codebook_sizes)
        for name in (
            "image_channels",
            "image_size",
            "channels",
            "res_channels",
            "num_codebooks",
            "code_dim",
            "mixtures",
            "coder_blocks",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZES[name]:
                raise ValueError(f"model.{name} must be an int in [1, {MAX_SIZES[name]}], got {value!r}")
        if (
            isinstance(self.res_blocks, bool)
            or not isinstance(self.res_blocks, int)
            or not 0 <= self.res_blocks <= MAX_SIZES["res_blocks"]
        ):
            raise ValueError(
                f"model.res_blocks must be an int in [0, {MAX_SIZES['res_blocks']}], got {self.res_blocks!r}"
            )
        if len(self.codebook_sizes) > MAX_SIZES["levels"]:
            raise ValueError(
                f"model.codebook_sizes: at most {MAX_SIZES['levels']} levels, got {len(self.codebook_sizes)}"
            )
        if self.channels % 2:
            raise ValueError(f"model.channels must be even (the first conv has channels/2), got {self.channels}")
        if self.stride not in (2, 4):
            raise ValueError(f"model.stride must be 2 or 4, got {self.stride!r}")
        if not self.codebook_sizes:
            raise ValueError("model.codebook_sizes is empty: give one codebook size per level, e.g. [32, 32, 32]")
        for k in self.codebook_sizes:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SIZES["codebook_size"]:
                raise ValueError(
                    f"model.codebook_sizes must hold codebook sizes in [1, {MAX_SIZES['codebook_size']}], "
                    f"got {self.codebook_sizes!r}"
                )
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"model.quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.head not in HEAD_NAMES:
            raise ValueError(f"model.head must be one of {HEAD_NAMES}, got {self.head!r}")
        if self.commitment not in COMMITMENTS:
            raise ValueError(f"model.commitment must be one of {COMMITMENTS}, got {self.commitment!r}")
        if self.learning not in ("ema", "gradient"):
            raise ValueError(f"model.learning must be 'ema' or 'gradient', got {self.learning!r}")
        if not isinstance(self.continuous, bool):
            raise ValueError(f"model.continuous must be true or false, got {self.continuous!r}")
        if self.search not in SEARCH_BACKENDS:
            raise ValueError(f"model.search must be one of {SEARCH_BACKENDS}, got {self.search!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"model.decay must be in [0, 1], got {self.decay}")
        for name in ("beta", "dead_code_threshold", "mse_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model.{name} must be a finite number >= 0, got {value}")
        self.check_image_size(self.image_size)

    @property
    def commitment_weight(self) -> float:
        """The weight of each quantizer's mean commitment: beta, or beta x M with "sum"."""
        return self.beta * (self.codebooks_per_level if self.commitment == "sum" else 1)

    @property
    def num_levels(self) -> int:
        """Hierarchy levels (one quantizer each)."""
        return len(self.codebook_sizes)

    @property
    def codebooks_per_level(self) -> int:
        """Codebooks that code one position: 1 for "vq" (one M*D-dim codebook), else M."""
        return 1 if self.quantizer == "vq" else self.num_codebooks

    def bits_per_position(self, level: int) -> float:
        """Capacity of one position of ``level``: codebooks_per_level * log2 K_level."""
        return self.codebooks_per_level * math.log2(self.codebook_sizes[level])

    @property
    def total_stride(self) -> int:
        """Downsampling from the image to the top level."""
        return self.stride * 2 ** (self.coder_blocks - 1) * 2 ** (len(self.codebook_sizes) - 1)

    def level_stride(self, level: int) -> int:
        """Downsampling from the image to ``level`` (0 = bottom)."""
        return self.stride * 2 ** (self.coder_blocks - 1) * 2**level

    def check_image_size(self, size: int) -> None:
        """Raise ValueError unless an image side of ``size`` fits the hierarchy."""
        if size % self.total_stride:
            raise ValueError(
                f"image size {size} is not divisible by the total stride {self.total_stride} "
                f"(stride {self.stride} x 2^{self.coder_blocks - 1} coder blocks x "
                f"2^{len(self.codebook_sizes) - 1} levels); use a multiple of {self.total_stride}"
            )

    @property
    def bottleneck_channels(self) -> int:
        """Channels of every level's quantized map: M*D for all quantizer kinds."""
        return self.num_codebooks * self.code_dim

    def bits_per_image(self, image_size: int | None = None) -> float:
        """Rate under a uniform prior: sum over levels of positions * codebooks * log2 K."""
        size = image_size or self.image_size
        self.check_image_size(size)
        return sum(
            (size // self.level_stride(level)) ** 2 * self.bits_per_position(level) for level in range(self.num_levels)
        )

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """From ``to_dict()`` output; also reads configs saved before ``levels`` was renamed
        ``codebook_sizes``."""
        values = dict(values)
        if "levels" in values and "codebook_sizes" not in values:
            values["codebook_sizes"] = values.pop("levels")
        return cls(**values)

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preset(name: str, **changes) -> ModelConfig:
    """The ``ModelConfig`` of a named architecture (``depthq.presets.MODELS``), optionally with
    fields changed."""
    if name not in MODELS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(MODELS)}")
    return ModelConfig(**{**MODELS[name].settings(), **changes})
