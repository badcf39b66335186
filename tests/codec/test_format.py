"""Property-based tests of the .dqz parser and writer (hypothesis)."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from depthq.codec.format import (  # noqa: E402
    HEADER_BYTES,
    MAGIC,
    VERSION,
    CodecError,
    Header,
    Limits,
    bytes_to_words,
    pack,
    unpack,
    words_to_bytes,
)

from fuzzing import with_crc  # noqa: E402  (same folder)

FAST = settings(max_examples=150, deadline=None)


@st.composite
def headers_and_streams(draw):
    tile = draw(st.integers(1, 64))
    height, width = draw(st.integers(1, 200)), draw(st.integers(1, 200))
    header = Header(
        draw(st.sampled_from(["lossless", "lossy"])),
        draw(st.integers(1, 255)),
        tile,
        height,
        width,
        draw(st.binary(min_size=4, max_size=4)),
        draw(st.binary(min_size=4, max_size=4)),
        draw(st.integers(0, 2**32 - 1)),
    )
    n = header.tiles
    if n > 64:  # keep examples small: shrink the image to at most 64 tiles
        header = Header(header.mode, header.channels, tile, min(height, 8 * tile), min(width, 8 * tile),
                        header.autoencoder_id, header.prior_id, header.content_crc)
        n = header.tiles
    streams = draw(st.lists(st.binary(min_size=1, max_size=300), min_size=n, max_size=n))
    return header, streams


@FAST
@given(headers_and_streams())
def test_unpack_inverts_pack(case):
    header, streams = case
    data = pack(header, streams)
    assert data.startswith(MAGIC) and data[4] == VERSION
    assert unpack(data, Limits(max_pixels=2**31)) == (header, streams)


@FAST
@given(headers_and_streams(), st.data())
def test_any_truncation_or_insertion_is_refused_with_one_line(case, data):
    header, streams = case
    blob = pack(header, streams)
    cut = data.draw(st.integers(0, len(blob) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=8))
    at = data.draw(st.integers(0, len(blob)))
    for bad in (blob[:cut], blob[:at] + extra + blob[at:]):
        with pytest.raises(CodecError) as err:
            unpack(bad, Limits(max_pixels=2**31))
        assert "\n" not in str(err.value)


@FAST
@given(st.binary(max_size=HEADER_BYTES - 1 + 64), st.booleans())
def test_arbitrary_bytes_are_parsed_or_refused_with_one_line(blob, ours):
    if ours:  # a plausible start and a valid checksum, so the later checks run
        blob = with_crc(MAGIC + bytes([VERSION]) + blob)
    try:
        header, streams = unpack(blob, Limits(max_pixels=10_000))
    except CodecError as err:
        assert "\n" not in str(err)
    else:
        assert len(streams) == header.tiles and header.height * header.width <= 10_000
        assert all(len(s) >= 1 for s in streams)
        assert sum(map(len, streams)) <= len(blob) - HEADER_BYTES


@FAST
@given(st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_word_streams_survive_the_trailing_zero_trim(words):
    import numpy as np

    w = np.array(words, dtype=np.uint32)
    back = bytes_to_words(words_to_bytes(w))
    assert len(words_to_bytes(w)) >= 1
    # whole trailing zero words go (the range decoder reads zeros past the end of its data)
    assert len(back) <= max(len(w), 1) and np.array_equal(back[: len(w)], w[: len(back)]) and not w[len(back) :].any()


def test_pack_refuses_fields_that_do_not_fit():
    ok = Header("lossless", 3, 32, 10, 10, b"abcd", b"efgh", 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        pack(Header("fast", 3, 32, 10, 10, b"abcd", b"efgh", 0), [b"x"])
    with pytest.raises(ValueError, match="image sides"):
        pack(Header("lossy", 3, 32, 0, 10, b"abcd", b"efgh", 0), [b"x"])
    with pytest.raises(ValueError, match="expected 1 streams"):
        pack(ok, [b"x", b"y"])
    with pytest.raises(ValueError, match="at least 1 byte"):
        pack(ok, [b""])
