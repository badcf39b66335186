"""Images of any size: padding, cropping, exact round trips, and batch-independent probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import depthq.codec.coder as coder
from depthq.codec.coder import Codec
from depthq.codec.format import HEADER_BYTES
from depthq.codec.measure import ideal_bits
from depthq.codec.tiling import chunks, pad, place, real_mask, tiles

from test_codec import TILE, images, make_models  # noqa: E402  (same folder)


@pytest.fixture(scope="module")
def grey():
    model, prior = make_models(seed=30, image_channels=1)
    return Codec(model, prior)


@pytest.fixture(scope="module")
def rgb():
    return Codec(*make_models(seed=31))


def photo(channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return images(1, max(h, w), channels=channels, seed=seed)[0][:, :h, :w].contiguous()


@pytest.mark.parametrize("h, w", [(1, 1), (1, 7), (5, 1), (15, 17), (16, 16), (17, 33), (2, 40)])
def test_lossless_is_exact_for_every_size_grey_and_rgb(grey, rgb, h, w):
    for codec, channels in ((grey, 1), (rgb, 3)):
        x = photo(channels, h, w, seed=h * 100 + w)
        (data,) = codec.compress(x)
        (back,) = codec.decompress([data])
        assert back.shape == (channels, h, w) and torch.equal(back, x)
        (lossy,) = codec.decompress(codec.compress(x, lossy=True))
        assert lossy.shape == (channels, h, w)


def test_padding_replicates_edges_and_place_crops():
    x = torch.arange(3 * 5 * 7, dtype=torch.int64).view(3, 5, 7).to(torch.uint8)
    p = pad(x, 4)
    assert p.shape == (3, 8, 8) and torch.equal(p[:, :5, :7], x)
    assert torch.equal(p[:, 5:, :7], x[:, 4:5].expand(3, 3, 7)) and torch.equal(p[:, :, 7], p[:, :, 6])
    parts = tiles(p, 4)
    assert parts.shape == (4, 3, 4, 4)
    out = torch.zeros_like(x)
    place(out, parts[:3], 0, 4)
    place(out, parts[3:], 3, 4)
    assert torch.equal(out, x)
    mask = real_mask(5, 7, 4)
    assert mask.shape == (4, 4, 4) and int(mask.sum()) == 35 and not mask[3, 1:, 3:].any()


def test_chunks_are_a_function_of_the_tile_count():
    assert chunks(3, 64) == [(0, 3, 4)]
    assert chunks(64, 64) == [(0, 64, 64)]
    assert chunks(130, 64) == [(0, 64, 64), (64, 128, 64), (128, 130, 2)]
    assert chunks(1, 8) == [(0, 1, 1)]
    with pytest.raises(ValueError, match="power of two"):
        chunks(5, 6)


def test_padding_pixels_cost_nothing_and_the_file_matches_its_ideal_length(rgb):
    x = photo(3, 17, 20, seed=3)  # 2x2 tiles, most of them padding
    ideal = ideal_bits(rgb.model, rgb.prior, x[None]).total.item()
    (data,) = rgb.compress(x)
    payload = 8 * (len(data) - HEADER_BYTES)
    assert ideal - 1 <= payload <= ideal * 1.005 + 4 * 64  # a few bytes per tile stream
    full = ideal_bits(rgb.model, rgb.prior, pad(x, TILE)[None]).total.item()
    assert ideal < full  # the padded pixels are not coded


def test_probabilities_are_bit_identical_on_both_sides_whatever_else_is_compressed(rgb, monkeypatch):
    """The determinism argument of coder.py, checked: every frequency table the decoder feeds the
    entropy coder equals the encoder's, and an image's file is the same alone or among others."""
    seen: dict[str, list[np.ndarray]] = {"pixels": [], "codes": []}
    real_freq, real_binary = coder.frequencies, coder.code_values

    def record_freqs(probs):
        f = real_freq(probs)
        seen["codes"].append(f)
        return f

    def record_values(cdf, count, choose):
        def spy(depth, f):
            seen["pixels"].append(f.copy())
            return choose(depth, f)

        return real_binary(cdf, count, spy)

    monkeypatch.setattr(coder, "frequencies", record_freqs)
    monkeypatch.setattr(coder, "code_values", record_values)
    x = photo(3, 40, 23, seed=5)  # 3x2 tiles: a batch of 8 rows, 2 of them padding
    (data,) = rgb.compress(x)
    encoded = {k: list(v) for k, v in seen.items()}
    seen["pixels"].clear(), seen["codes"].clear()
    assert torch.equal(rgb.decompress([data])[0], x)
    for kind in ("codes", "pixels"):
        assert len(encoded[kind]) == len(seen[kind]) > 0
        assert all(np.array_equal(a, b) for a, b in zip(encoded[kind], seen[kind])), kind
    monkeypatch.undo()
    others = [photo(3, 16, 16, seed=6), photo(3, 33, 5, seed=7)]
    assert rgb.compress([others[0], x, others[1]])[1] == data


def test_the_batch_size_is_part_of_the_format_but_not_of_correctness(monkeypatch):
    model, prior = make_models(seed=32)
    x = photo(3, 48, 48, seed=8)  # 9 tiles
    monkeypatch.setattr(coder, "CHUNK", 4)
    small = Codec(model, prior)
    assert small.chunk == 4
    files = small.compress(x)
    assert torch.equal(small.decompress(files)[0], x)
    monkeypatch.setattr(coder, "CHUNK", 64)
    big = Codec(model, prior)
    assert torch.equal(big.decompress(big.compress(x))[0], x)
