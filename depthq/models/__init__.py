"""DQ-AE and VQ-VAE: the hierarchical autoencoder, its config and presets, likelihood heads."""

from depthq.models.autoencoder import (
    AutoencoderOutput,
    Bottleneck,
    HierarchicalAutoencoder,
)
from depthq.models.config import QUANTIZERS, ModelConfig, preset
from depthq.models.heads import HEADS, LikelihoodHead, make_head, normalise

__all__ = [
    "HEADS",
    "QUANTIZERS",
    "AutoencoderOutput",
    "Bottleneck",
    "HierarchicalAutoencoder",
    "LikelihoodHead",
    "ModelConfig",
    "make_head",
    "normalise",
    "preset",
]
