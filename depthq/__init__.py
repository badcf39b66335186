"""depthq: Depthwise Quantization (DQ) for PyTorch.

A vector-quantization bottleneck that splits a feature tensor along its channel axis and gives
every slice its own codebook: capacity K^M for a cost of M*K code vectors.
"""

__version__ = "0.1.0"

from depthq.io import load, save_model
from depthq.quantize import DepthwiseQuantizer, QuantizerOutput

__all__ = ["DepthwiseQuantizer", "QuantizerOutput", "__version__", "load", "save_model"]
