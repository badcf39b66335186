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

from depthq.codec.coder import Codec
from depthq.codec.format import DEFAULT_MAX_PIXELS, EXTENSION, HEADER_BYTES, CodecError, Limits
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
