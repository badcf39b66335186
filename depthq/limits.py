"""The codec's resource limits, in a leaf module: the command line shows them in ``--help``
without importing torch (``depthq.codec`` does), and ``depthq.codec.format`` enforces them."""

#: The default largest image (H*W) a codec compresses or decodes: 4096 x 4096. In the spirit of
#: Pillow's ``MAX_IMAGE_PIXELS`` (a decompression-bomb guard), sized by what decoding costs here:
#: about 10 s per megapixel on 2 CPU cores with the demo model, so about 3 minutes and
#: ``PEAK_BYTES_PER_PIXEL`` bytes per pixel at this limit.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: memory a decode holds per pixel of the image beyond its fixed working buffers: the decoded
#: image (C bytes) and the file (about a byte)
PEAK_BYTES_PER_PIXEL = 4
