"""The ``.dqz`` file format: a 27-byte header, then one entropy-coded stream per tile.

All integers little-endian::

    offset  bytes  field
    0       4      magic b"\\x89DQZ"
    4       1      format version (1)
    5       1      mode: 0 lossless, 1 lossy
    6       1      image channels C
    7       2      image height H
    9       2      image width W
    11      4      autoencoder id: the first 4 bytes of its weights' SHA-256 (``state_digest``)
    15      4      prior id: the same for the prior
    19      4      CRC-32 of the content: lossless the pixels (C, H, W) uint8, lossy the codes
    23      4      CRC-32 of bytes 0..22 and of the payload
    27      ...    payload: for n > 1 tiles, n - 1 stream lengths (LEB128), then the n streams

An image is cut into tiles of the prior's image size (row-major); each tile's stream is the
range coder's output (32-bit words, little-endian) with its trailing zero bytes removed (the
reader pads them back). The header CRC makes a damaged or truncated file fail before anything is
decoded; the content CRC makes a file decoded with arithmetic that differs from the encoder's
(another platform) fail instead of giving a wrong image.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from depthq.errors import CorruptFileError

MAGIC = b"\x89DQZ"
VERSION = 1
EXTENSION = ".dqz"
MODES = ("lossless", "lossy")
_HEAD = struct.Struct("<4sBBBHH4s4sI")  # everything before the header CRC
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEAD.size + _CRC.size  # 27


class CodecError(CorruptFileError):
    """A file that cannot be decoded: not ours, damaged, truncated, or from another model."""


def crc32(data: bytes | np.ndarray) -> int:
    return zlib.crc32(data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()) & 0xFFFFFFFF


@dataclass(frozen=True)
class Header:
    mode: str
    channels: int
    height: int
    width: int
    autoencoder_id: bytes  # 4 bytes
    prior_id: bytes  # 4 bytes
    content_crc: int


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise CodecError("corrupt file: a stream length runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def words_to_bytes(words: np.ndarray) -> bytes:
    """A range coder's uint32 words -> bytes without the trailing zero bytes."""
    return words.astype("<u4").tobytes().rstrip(b"\0")


def bytes_to_words(data: bytes) -> np.ndarray:
    """Inverse of ``words_to_bytes``: pad to whole words with zeros."""
    return np.frombuffer(data + b"\0" * (-len(data) % 4), dtype="<u4").astype(np.uint32)


def pack(header: Header, streams: list[bytes]) -> bytes:
    """The file: header, stream lengths, streams."""
    if header.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {header.mode!r}")
    if not (0 < header.height < 2**16 and 0 < header.width < 2**16 and 0 < header.channels < 256):
        raise ValueError(
            f"image size {header.channels}x{header.height}x{header.width} does not fit the format "
            "(sides up to 65535, channels up to 255)"
        )
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        MODES.index(header.mode),
        header.channels,
        header.height,
        header.width,
        header.autoencoder_id,
        header.prior_id,
        header.content_crc,
    )
    payload = b"".join(_leb128(len(s)) for s in streams[:-1]) + b"".join(streams)
    return head + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)) & 0xFFFFFFFF) + payload


def unpack(data: bytes, tiles_of) -> tuple[Header, list[bytes]]:
    """Parse and check a file; ``tiles_of(header)`` gives its number of tiles.

    Raises ``CodecError`` with one line saying what is wrong.
    """
    if len(data) < HEADER_BYTES:
        if not MAGIC.startswith(data[:4]) or not data:
            raise CodecError(f"not a depthq compressed file ({len(data)} bytes, no {MAGIC!r} header)")
        raise CodecError(f"truncated file: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, mode, channels, height, width, ae_id, prior_id, content_crc = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a depthq compressed file (it starts with {data[:4]!r}, not {MAGIC!r})")
    if version != VERSION:
        raise CodecError(f"format version {version}: this depthq reads version {VERSION} files")
    (stored,) = _CRC.unpack_from(data, _HEAD.size)
    head, payload = data[: _HEAD.size], data[HEADER_BYTES:]
    if zlib.crc32(payload, zlib.crc32(head)) & 0xFFFFFFFF != stored:
        raise CodecError("corrupt or truncated file: its checksum does not match its contents")
    if mode >= len(MODES):
        raise CodecError(f"corrupt file: unknown mode {mode}")
    header = Header(MODES[mode], channels, height, width, ae_id, prior_id, content_crc)
    n = tiles_of(header)
    lengths, pos = [], 0
    for _ in range(n - 1):
        length, pos = _read_leb128(payload, pos)
        lengths.append(length)
    rest = len(payload) - pos - sum(lengths)
    if rest < 0:
        raise CodecError("corrupt file: its stream lengths exceed the payload")
    streams = []
    for length in [*lengths, rest]:
        streams.append(payload[pos : pos + length])
        pos += length
    return header, streams
