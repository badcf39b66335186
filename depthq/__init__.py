"""depthq: Depthwise Quantization (DQ) for PyTorch.

A vector-quantization bottleneck that splits a feature tensor along its channel axis and gives
every slice its own codebook: capacity K^M for a cost of M*K code vectors.

The public names are imported on first use (for start-up time: light modules such as
``depthq.atomic`` and the CLI's argument parsing do not pay for torch).
"""

import importlib
from typing import TYPE_CHECKING, Any

from depthq.version import __version__

_EXPORTS = {
    "DepthwiseQuantizer": "depthq.quantize",
    "QuantizerOutput": "depthq.quantize",
    "load": "depthq.io",
    "save_model": "depthq.io",
}

if TYPE_CHECKING:
    from depthq.io import load, save_model
    from depthq.quantize import DepthwiseQuantizer, QuantizerOutput


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'depthq' has no attribute {name!r}")


__all__ = ["DepthwiseQuantizer", "QuantizerOutput", "__version__", "load", "save_model"]
