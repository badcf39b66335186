"""A seeded, time-bounded mutation fuzzer for .dqz files (used by test_fuzz.py).

``mutations(data, rng)`` yields (kind, mutated bytes) forever, cycling through the kinds;
``run(codec, files, expected, seconds, seed)`` decodes mutations until the time is up and
returns what happened: every outcome must be an exact decode or a one-line ``DepthqError``.

Run it longer by hand: ``DEPTHQ_FUZZ_SECONDS=120 pytest tests/codec/test_fuzz.py -s``.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from depthq.codec.format import HEADER_BYTES
from depthq.errors import DepthqError

# (name, offset, struct format) of every header field before the header CRC
FIELDS = (
    ("magic", 0, "4s"),
    ("version", 4, "B"),
    ("mode", 5, "B"),
    ("channels", 6, "B"),
    ("tile", 7, "H"),
    ("height", 9, "I"),
    ("width", 13, "I"),
    ("autoencoder_id", 17, "4s"),
    ("prior_id", 21, "4s"),
    ("content_crc", 25, "I"),
)
CRC_AT = 29

#: what each message says, for the summary
CATEGORIES = (
    ("not ours", "not a depthq"),
    ("checksum (header)", "checksum does not match its contents"),
    ("truncated", "truncated"),
    ("version", "format version"),
    ("mode", "unknown mode"),
    ("size zero", "every size must be >= 1"),
    ("over max_pixels", "over the limit"),
    ("too many tiles for the payload", "payload bytes"),
    ("stream lengths", "stream length"),
    ("another model", "another model"),
    ("model mismatch", "does not fit this codec"),
    ("entropy decoder", "entropy decoder"),
    ("content checksum", "match the file's checksum"),
)


def with_crc(data: bytes) -> bytes:
    """``data`` with its header CRC recomputed (so only the later checks can refuse it)."""
    if len(data) < HEADER_BYTES:
        return data
    crc = zlib.crc32(data[HEADER_BYTES:], zlib.crc32(data[:CRC_AT])) & 0xFFFFFFFF
    return data[:CRC_AT] + struct.pack("<I", crc) + data[HEADER_BYTES:]


def _field_values(fmt: str, old, rng: np.random.Generator) -> list:
    if fmt.endswith("s"):
        return [bytes(rng.integers(0, 256, 4, dtype=np.uint8)), b"\0" * 4, b"\xff" * 4]
    top = {"B": 2**8 - 1, "H": 2**16 - 1, "I": 2**32 - 1}[fmt]
    values = [0, 1, 2, top, old + 1, max(old - 1, 0), 2 * old, int(rng.integers(0, top + 1)), 8192, 65535]
    return [v for v in values if 0 <= v <= top]


def mutations(data: bytes, rng: np.random.Generator):
    """Mutations of one file, by kind, cycling: bit flips, truncations, insertions, every header
    field rewritten (CRC recomputed), the payload's bits flipped or replaced by random bytes
    (CRC recomputed), stream lengths rewritten (CRC recomputed)."""
    n = len(data)
    while True:
        flipped = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, n))
            flipped[i] ^= 1 << int(rng.integers(0, 8))
        yield "bit flips", bytes(flipped)
        yield "truncation", data[: int(rng.integers(0, n))]
        at = int(rng.integers(0, n + 1))
        yield "insertion", data[:at] + bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8)) + data[at:]
        for name, offset, fmt in FIELDS:  # one value of each field per round
            (old,) = struct.unpack_from("<" + fmt, data, offset)
            values = _field_values(fmt, old, rng)
            value = values[int(rng.integers(0, len(values)))]
            changed = data[:offset] + struct.pack("<" + fmt, value) + data[offset + struct.calcsize(fmt) :]
            yield f"header {name} (CRC recomputed)", with_crc(changed)
        payload = bytearray(data[HEADER_BYTES:])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(payload)))
            payload[i] ^= 1 << int(rng.integers(0, 8))
        yield "payload bit flips (CRC recomputed)", with_crc(data[:HEADER_BYTES] + bytes(payload))
        noise = bytes(rng.integers(0, 256, len(payload), dtype=np.uint8))
        yield "random payload (CRC recomputed)", with_crc(data[:HEADER_BYTES] + noise)
        lengths = bytearray(data[HEADER_BYTES : HEADER_BYTES + 4])
        lengths[int(rng.integers(0, len(lengths)))] = int(rng.integers(0, 256))
        yield "stream lengths (CRC recomputed)", with_crc(data[:HEADER_BYTES] + bytes(lengths) + data[HEADER_BYTES + 4 :])


def category(message: str) -> str:
    return next((name for name, text in CATEGORIES if text in message), "other")


@dataclass
class FuzzReport:
    tried: int = 0
    exact: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (kind, category) -> count
    slowest_s: float = 0.0
    peak_traced_bytes: int = 0
    bad: list = field(default_factory=list)  # (kind, what went wrong)

    def table(self) -> str:
        lines = [f"{self.tried} mutations, {self.exact} decoded exactly; slowest {self.slowest_s:.2f} s, "
                 f"peak traced {self.peak_traced_bytes / 2**20:.1f} MiB"]
        lines += [f"  {kind}: {cat} x{count}" for (kind, cat), count in sorted(self.outcomes.items())]
        return "\n".join(lines)


def run(codec, files: list[bytes], expected: list[torch.Tensor], seconds: float, seed: int,
        max_seconds_each: float) -> FuzzReport:
    """Decode mutations of ``files`` round-robin for ``seconds``; record every outcome."""
    rng = np.random.default_rng(seed)
    streams = [mutations(f, rng) for f in files]
    report = FuzzReport()
    end = time.perf_counter() + seconds
    tracemalloc.start()
    try:
        while time.perf_counter() < end:
            for which, stream in enumerate(streams):
                kind, data = next(stream)
                tracemalloc.reset_peak()
                start = time.perf_counter()
                try:
                    (out,) = codec.decompress([data])
                except DepthqError as err:
                    message = str(err)
                    if "\n" in message or not message:
                        report.bad.append((kind, f"not one line: {message!r}"))
                    report.outcomes[kind, category(message)] += 1
                except Exception as err:  # noqa: BLE001 - the point: anything else is a bug
                    report.bad.append((kind, f"{type(err).__name__}: {err}"))
                else:
                    if torch.equal(out, expected[which]):
                        report.exact += 1
                        report.outcomes[kind, "exact decode"] += 1
                    else:
                        report.bad.append((kind, "decoded to a different image"))
                took = time.perf_counter() - start
                report.slowest_s = max(report.slowest_s, took)
                report.peak_traced_bytes = max(report.peak_traced_bytes, tracemalloc.get_traced_memory()[1])
                if took > max_seconds_each:
                    report.bad.append((kind, f"took {took:.1f} s"))
                report.tried += 1
    finally:
        tracemalloc.stop()
    return report
