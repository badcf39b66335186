"""Crafted and damaged .dqz files: every outcome an exact decode or one line, in bounded time and memory."""

from __future__ import annotations

import os
import resource
import struct
import time

import numpy as np
import pytest
import torch

import depthq.codec.coder as coder
from depthq.codec.coder import Codec
from depthq.codec.format import HEADER_BYTES, CodecError
from depthq.errors import DepthqError

from fuzzing import FIELDS, run, with_crc  # noqa: E402  (same folder)
from test_codec import images, make_models  # noqa: E402

SECONDS = float(os.environ.get("DEPTHQ_FUZZ_SECONDS", "5"))


@pytest.fixture(scope="module")
def corpus():
    model, prior = make_models(seed=40)
    codec = Codec(model, prior)
    big = images(1, 37, seed=41)[0][:, :20]  # 20x37: 2x3 tiles of 16
    small = images(1, 5, seed=42)[0][:, :, :3]  # 5x3: one tile
    files = [codec.compress(big)[0], codec.compress(small)[0], codec.compress(big, lossy=True)[0]]
    expected = [big, small, codec.decompress(files[2])[0]]
    return codec, files, expected


def test_mutated_files_decode_exactly_or_fail_with_one_line(corpus):
    codec, files, expected = corpus
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    report = run(codec, files, expected, seconds=SECONDS, seed=0, max_seconds_each=5.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print(report.table())
    assert not report.bad, report.bad[:5]
    kinds = {kind for kind, _ in report.outcomes}
    expected_kinds = {"bit flips", "truncation", "insertion", "payload bit flips (CRC recomputed)",
                      "random payload (CRC recomputed)", "stream lengths (CRC recomputed)"}
    expected_kinds |= {f"header {name} (CRC recomputed)" for name, _, _ in FIELDS}
    assert expected_kinds <= kinds, f"not every kind was tried in {SECONDS} s: {expected_kinds - kinds}"
    assert report.peak_traced_bytes < 64 * 2**20 and grown_mib < 256


def test_the_fuzzer_can_fail(corpus, monkeypatch):
    codec, files, expected = corpus

    def unguarded(decoder, family, probs, tile):  # the entropy decoder's own exceptions escape
        return decoder.decode(family, probs)

    monkeypatch.setattr(coder, "_entropy_decode", unguarded)
    rng = np.random.default_rng(1)
    data = files[0]
    random_payloads = [
        with_crc(data[:HEADER_BYTES] + bytes(rng.integers(0, 256, len(data) - HEADER_BYTES, dtype=np.uint8)))
        for _ in range(40)
    ]
    escaped = 0
    for data in random_payloads:
        try:
            codec.decompress([data])
        except DepthqError:
            pass
        except Exception:  # noqa: BLE001
            escaped += 1
    assert escaped  # without the guard, constriction's errors get through: the fuzzer would see them


def set_field(data: bytes, name: str, value) -> bytes:
    offset, fmt = next((o, f) for n, o, f in FIELDS if n == name)
    return with_crc(data[:offset] + struct.pack("<" + fmt, value) + data[offset + struct.calcsize(fmt) :])


def test_a_small_file_claiming_a_huge_image_is_refused_at_once(corpus):
    codec, files, _ = corpus
    huge = set_field(set_field(files[0], "height", 8192), "width", 8192)
    bomb = with_crc(huge[:HEADER_BYTES] + b"\x01" * (64 * 1024))  # 64 KiB of one-byte streams
    for data in (huge, bomb):
        start = time.perf_counter()
        with pytest.raises(CodecError, match=r"8192x8192 \(67,108,864 pixels\), over the limit .*--max-pixels 67108864"):
            codec.decompress([data])
        assert time.perf_counter() - start < 0.5
    model, prior = make_models(seed=40)
    generous = Codec(model, prior, max_pixels=2**27)
    with pytest.raises(CodecError, match="262,144 tiles of 16, which need at least 524,287 payload bytes"):
        generous.decompress([bomb])


def test_zero_sizes_random_payloads_and_bad_lengths_are_one_line_errors(corpus):
    codec, files, _ = corpus
    for name in ("height", "width", "channels", "tile"):
        with pytest.raises(CodecError, match="every size must be >= 1"):
            codec.decompress([set_field(files[0], name, 0)])
    rng = np.random.default_rng(3)
    for data in files:
        for _ in range(5):
            noise = bytes(rng.integers(0, 256, len(data) - HEADER_BYTES, dtype=np.uint8))
            with pytest.raises(CodecError) as err:
                codec.decompress([with_crc(data[:HEADER_BYTES] + noise)])
            assert "\n" not in str(err.value)
    with pytest.raises(CodecError, match="stream has length 0"):
        codec.decompress([with_crc(files[0][:HEADER_BYTES] + b"\x00" + files[0][HEADER_BYTES + 1 :])])
    with pytest.raises(CodecError, match="exceed the payload"):
        codec.decompress([with_crc(files[0][:HEADER_BYTES] + b"\xff\xff\x7f" + files[0][HEADER_BYTES + 3 :])])



@pytest.mark.parametrize("field,offset,delta", [("height", 9, -1), ("width", 13, -1), ("width", 13, 1)])
def test_a_lossy_file_whose_size_was_rewritten_fails(corpus, field, offset, delta):
    """A lossy file's content CRC covers its size: the same codes under a rewritten height or width
    (same tiles, header CRC recomputed) are refused, not decoded to another crop."""
    codec, files, _ = corpus
    data = files[2]  # lossy, 20x37: 2x3 tiles of 16, so one pixel more or less keeps the tiles
    (old,) = struct.unpack_from("<I", data, offset)
    forged = with_crc(data[:offset] + struct.pack("<I", old + delta) + data[offset + 4 :])
    with pytest.raises(CodecError, match="checksum"):
        codec.decompress([forged])
