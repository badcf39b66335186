"""The ``.dqz`` file format (version 2): a 33-byte header, then one entropy-coded stream per tile.

All integers little-endian::

    offset  bytes  field
    0       4      magic b"\\x89DQZ"
    4       1      format version (2)
    5       1      mode: 0 lossless, 1 lossy
    6       1      image channels C (1..255)
    7       2      tile side t (1..65535): the prior's image size
    9       4      image height H (>= 1), the true size before padding
    13      4      image width W (>= 1)
    17      4      autoencoder id: the first 4 bytes of its weights' SHA-256 (``state_digest``)
    21      4      prior id: the same for the prior
    25      4      CRC-32 of the content: lossless the pixels (C, H, W) uint8, lossy the image
                   size (H, W as two little-endian uint32) then the codes (n, T, M) uint16
    29      4      CRC-32 of bytes 0..28 and of the payload
    33      ...    payload: for n > 1 tiles, n - 1 stream lengths (LEB128, each >= 1), then the
                   n streams

The image is padded to ceil(H/t) x ceil(W/t) tiles by edge replication and cut row-major into
n tiles; each tile's stream is the range coder's output (32-bit words, little-endian) with its
trailing zero bytes removed (the reader pads them back), but never shorter than one byte. So a
file of n tiles has a payload of at least 2n - 1 bytes: the reader checks that, and the pixel
count against a limit (``Limits``), before anything is allocated or decoded. The header CRC makes
a damaged or truncated file fail before anything is decoded; the content CRC makes a file decoded
with arithmetic that differs from the encoder's (another platform), or a crafted payload under a
recomputed header CRC, fail instead of giving a wrong image.

Version 1 files (27-byte header, sides multiples of the tile, every sub-pixel coded with its whole
256-value distribution) are refused with one line: their probabilities were computed another
way, and a version-2 coder cannot reproduce them bit for bit. Decode them with the depthq that
wrote them (before format 2).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from depthq.errors import CorruptFileError
from depthq.limits import DEFAULT_MAX_PIXELS, PEAK_BYTES_PER_PIXEL

MAGIC = b"\x89DQZ"
VERSION = 2
EXTENSION = ".dqz"
MODES = ("lossless", "lossy")
_HEAD = struct.Struct("<4sBBBHII4s4sI")  # everything before the header CRC
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEAD.size + _CRC.size  # 33
MIN_STREAM_BYTES = 1  # every tile's stream: so a file's tile count is bounded by its size
MAX_SIDE = 2**32 - 1


class CodecError(CorruptFileError):
    """A file that cannot be decoded: not ours, damaged, truncated, over the limits, or from
    another model (a ``DepthqError`` and a ``ValueError``; its message is one line)."""


def size_crc(height: int, width: int) -> int:
    """The start of a lossy file's content CRC: its image size, so that a header whose size was
    rewritten (with a recomputed header CRC) fails instead of decoding the same codes to another
    crop."""
    return crc32(struct.pack("<II", height, width))


def crc32(data: bytes | np.ndarray, value: int = 0) -> int:
    """CRC-32 of bytes or of an array's bytes (C order), continuing from ``value``."""
    raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    return zlib.crc32(raw, value) & 0xFFFFFFFF


@dataclass(frozen=True)
class Limits:
    """What a codec agrees to decode (and encode): checked against a file's header first.

    Attributes:
        max_pixels: the largest H*W (``DEFAULT_MAX_PIXELS``); decoding time and memory grow
            linearly with it (``Codec(..., max_pixels=...)``, ``--max-pixels`` on the command line).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be an integer >= 1, got {self.max_pixels!r}")

    def check_pixels(self, height: int, width: int, what: str) -> None:
        """CodecError (one line) if an image of ``height`` x ``width`` is over ``max_pixels``."""
        pixels = height * width
        if pixels > self.max_pixels:
            raise CodecError(
                f"{what} is {height}x{width} ({pixels:,} pixels), over the limit of {self.max_pixels:,} pixels: "
                f"allow it with --max-pixels {pixels} (Python: Codec(..., max_pixels={pixels})); decoding needs "
                f"about {pixels * PEAK_BYTES_PER_PIXEL / 2**20:,.0f} MiB and time in proportion to the pixels"
            )


@dataclass(frozen=True)
class Header:
    """A file's header fields (see the module docstring)."""

    mode: str
    channels: int
    tile: int
    height: int
    width: int
    autoencoder_id: bytes  # 4 bytes
    prior_id: bytes  # 4 bytes
    content_crc: int

    @property
    def grid(self) -> tuple[int, int]:
        """Tile rows and columns: (ceil(H/t), ceil(W/t))."""
        return math.ceil(self.height / self.tile), math.ceil(self.width / self.tile)

    @property
    def tiles(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def check(self) -> None:
        """ValueError unless every field fits the format."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not (1 <= self.channels <= 255 and 1 <= self.tile < 2**16):
            raise ValueError(
                f"channels must be in 1..255 and the tile side in 1..65535, got {self.channels}, {self.tile}"
            )
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise ValueError(f"image sides must be in 1..{MAX_SIDE}, got {self.height}x{self.width}")
        if len(self.autoencoder_id) != 4 or len(self.prior_id) != 4 or not 0 <= self.content_crc < 2**32:
            raise ValueError("model ids must be 4 bytes and the content CRC a 32-bit value")


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_leb128(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:  # 5 bytes: 35 bits, more than any payload holds
            raise CodecError("corrupt file: a stream length runs past the end or is too long")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def words_to_bytes(words: np.ndarray) -> bytes:
    """A range coder's uint32 words -> bytes without the trailing zero bytes (at least
    ``MIN_STREAM_BYTES``)."""
    data = words.astype("<u4").tobytes().rstrip(b"\0")
    return data + b"\0" * (MIN_STREAM_BYTES - len(data)) if len(data) < MIN_STREAM_BYTES else data


def bytes_to_words(data: bytes) -> np.ndarray:
    """Inverse of ``words_to_bytes``: pad to whole words with zeros."""
    return np.frombuffer(data + b"\0" * (-len(data) % 4), dtype="<u4").astype(np.uint32)


def pack(header: Header, streams: list[bytes]) -> bytes:
    """The file: header, stream lengths, streams (one per tile, each at least one byte)."""
    header.check()
    if len(streams) != header.tiles or any(len(s) < MIN_STREAM_BYTES for s in streams):
        raise ValueError(
            f"expected {header.tiles} streams of at least {MIN_STREAM_BYTES} byte for a "
            f"{header.height}x{header.width} image in tiles of {header.tile}, got {len(streams)}"
        )
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        MODES.index(header.mode),
        header.channels,
        header.tile,
        header.height,
        header.width,
        header.autoencoder_id,
        header.prior_id,
        header.content_crc,
    )
    payload = b"".join(_leb128(len(s)) for s in streams[:-1]) + b"".join(streams)
    return head + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)) & 0xFFFFFFFF) + payload


def read_header(data: bytes, limits: Limits = Limits()) -> Header:
    """Parse and check a file's header against its checksum, its own size and ``limits``.

    Raises ``CodecError`` with one line saying what is wrong; allocates nothing in proportion to
    what the header claims.
    """
    if len(data) < HEADER_BYTES:
        if not data or not MAGIC.startswith(data[:4]):
            raise CodecError(f"not a depthq compressed file ({len(data)} bytes, no {MAGIC!r} header)")
        raise CodecError(f"truncated file: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    if data[:4] != MAGIC:
        raise CodecError(f"not a depthq compressed file (it starts with {data[:4]!r}, not {MAGIC!r})")
    if data[4] != VERSION:
        hint = " (written by depthq before format 2: decode it with that version)" if data[4] == 1 else ""
        raise CodecError(f"format version {data[4]}: this depthq reads version {VERSION} files{hint}")
    magic, version, mode, channels, tile, height, width, ae_id, prior_id, content_crc = _HEAD.unpack_from(data)
    (stored,) = _CRC.unpack_from(data, _HEAD.size)
    if zlib.crc32(memoryview(data)[HEADER_BYTES:], zlib.crc32(data[: _HEAD.size])) & 0xFFFFFFFF != stored:
        raise CodecError("corrupt or truncated file: its checksum does not match its contents")
    if mode >= len(MODES):
        raise CodecError(f"corrupt file: unknown mode {mode} (0 lossless, 1 lossy)")
    if channels == 0 or tile == 0 or height == 0 or width == 0:
        raise CodecError(
            f"corrupt file: it claims a {channels}x{height}x{width} image in tiles of {tile} (every size must be >= 1)"
        )
    header = Header(MODES[mode], channels, tile, height, width, ae_id, prior_id, content_crc)
    limits.check_pixels(height, width, "the file's image")
    payload = len(data) - HEADER_BYTES
    if 2 * header.tiles - 1 > payload:
        raise CodecError(
            f"corrupt file: a {height}x{width} image is {header.tiles:,} tiles of {tile}, which need at least "
            f"{2 * header.tiles - 1:,} payload bytes; the file has {payload:,}"
        )
    return header


def unpack(data: bytes, limits: Limits = Limits()) -> tuple[Header, list[bytes]]:
    """Parse and check a file (``read_header``), then split its payload into the tiles' streams.

    Raises ``CodecError`` with one line saying what is wrong.
    """
    header = read_header(data, limits)
    payload = memoryview(data)[HEADER_BYTES:]
    n = header.tiles
    lengths, pos, total = [], 0, 0
    for _ in range(n - 1):
        length, pos = _read_leb128(payload, pos)
        if length < MIN_STREAM_BYTES:
            raise CodecError(f"corrupt file: a tile's stream has length {length} (at least {MIN_STREAM_BYTES})")
        total += length
        if pos + total > len(payload):
            raise CodecError("corrupt file: its stream lengths exceed the payload")
        lengths.append(length)
    rest = len(payload) - pos - total
    if rest < MIN_STREAM_BYTES:
        raise CodecError("corrupt file: its stream lengths leave no room for the last tile's stream")
    streams = []
    for length in [*lengths, rest]:
        streams.append(bytes(payload[pos : pos + length]))
        pos += length
    return header, streams
