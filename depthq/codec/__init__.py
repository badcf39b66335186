"""Entropy-coded ``.dqz`` files from an autoencoder and its learned prior (spec section 7).

- ``Codec(model, prior)``: ``compress(images, lossy=False) -> list[bytes]``, ``decompress(files)``;
- ``CodecError``: a file that is not ours, damaged, truncated or from another model (a ValueError);
- ``measure(model, prior, images) -> CodecMeasurement``: real files both ways, every lossless round
  trip verified, sizes against the ideal code length (``ideal_bits``), PSNR and speed;
- ``pillow_bits_per_dim`` (PNG, WebP lossless) and ``pillow_lossy_at_rate`` (JPEG, WebP at a
  matched rate): the reference codecs on the same images;
- ``CodecSection`` (``measure_section``): those figures as the ``codec`` section of an evaluation
  (``depthq eval --codec``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# the format's constants and errors are torch-free: the command line reads them to build its
# --help without importing torch; everything else loads on first use (PEP 562)
from depthq.codec.format import DEFAULT_MAX_PIXELS, EXTENSION, HEADER_BYTES, CodecError, Limits

_LAZY = {
    "Codec": "depthq.codec.coder",
    "CodecMeasurement": "depthq.codec.measure",
    "IdealBits": "depthq.codec.measure",
    "LossyPoint": "depthq.codec.measure",
    "ideal_bits": "depthq.codec.measure",
    "measure": "depthq.codec.measure",
    "pillow_bits_per_dim": "depthq.codec.measure",
    "pillow_lossy": "depthq.codec.measure",
    "pillow_lossy_at_rate": "depthq.codec.measure",
    "CodecSection": "depthq.codec.section",
    "measure_section": "depthq.codec.section",
    "pad": "depthq.codec.tiling",
    "tiles": "depthq.codec.tiling",
}

if TYPE_CHECKING:
    from depthq.codec.coder import Codec
    from depthq.codec.measure import (
        CodecMeasurement,
        IdealBits,
        LossyPoint,
        ideal_bits,
        measure,
        pillow_bits_per_dim,
        pillow_lossy,
        pillow_lossy_at_rate,
    )
    from depthq.codec.section import CodecSection, measure_section
    from depthq.codec.tiling import pad, tiles


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depthq.codec' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXTENSION",
    "HEADER_BYTES",
    "Codec",
    "CodecError",
    "CodecMeasurement",
    "CodecSection",
    "IdealBits",
    "Limits",
    "LossyPoint",
    "ideal_bits",
    "measure",
    "measure_section",
    "pad",
    "pillow_bits_per_dim",
    "pillow_lossy",
    "pillow_lossy_at_rate",
    "tiles",
]
