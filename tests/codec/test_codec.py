"""The .dqz codec: exact round trips, determinism, sizes, and refusing bad files."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import torch

from depthq.codec.coder import CHUNK, Codec, frequencies
from depthq.codec.format import HEADER_BYTES, MAGIC, CodecError
from depthq.codec.measure import CodecMeasurement, ideal_bits, measure, pillow_bits_per_dim
from depthq.models import HierarchicalAutoencoder, preset
from depthq.prior import CodeLayout, PriorConfig, PriorModel

TILE = 16  # the tiny preset has a total stride of 4: codes 8x8 and 4x4 per 16x16 tile


def make_models(seed: int = 0, order: str = "joint", **changes):
    """A random tiny autoencoder and a random prior for its 16x16 tiles (no training needed: the
    codec must be exact for any weights)."""
    torch.manual_seed(seed)
    model = HierarchicalAutoencoder(preset("tiny", **changes)).eval()
    prior = PriorModel(CodeLayout.of(model.config, TILE), PriorConfig(order=order, dim=16, layers=1, heads=2))
    g = torch.Generator().manual_seed(seed + 1)
    for p in prior.heads.parameters():  # away from uniform
        p.data = torch.randn(p.shape, generator=g)
    return model, prior.eval()


def images(n: int, size: int = TILE, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth random images (noise on a gradient), so that the codes vary."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 200, size).view(1, 1, 1, size)
    x = ramp + torch.randint(0, 56, (n, channels, size, size), generator=g)
    return x.clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def rgb():
    model, prior = make_models()
    return model, prior, Codec(model, prior)


def test_lossless_round_trip_is_bit_exact_whatever_the_callers_batches(rgb):
    _, _, codec = rgb
    x = images(CHUNK + 3)  # more than one chunk
    files = codec.compress(x)
    assert all(f.startswith(MAGIC) for f in files)
    assert all(torch.equal(a, b) for a, b in zip(codec.decompress(files), x))
    # the same bytes when the caller compresses one image at a time, or in another grouping
    assert [codec.compress(x[i])[0] for i in (0, 7, CHUNK + 2)] == [files[0], files[7], files[CHUNK + 2]]
    assert codec.compress(x[5:9]) == files[5:9]
    again = codec.decompress(files[CHUNK + 2 :] + files[:2])
    assert torch.equal(torch.stack(again), torch.cat([x[CHUNK + 2 :], x[:2]]))


def test_images_of_several_tiles_and_sizes_round_trip(rgb):
    _, _, codec = rgb
    wide, tall = images(1, 48, seed=1)[0][:, :32], images(1, 32, seed=2)[0]  # (3, 32, 48), (3, 32, 32)
    files = codec.compress([wide, tall, images(1, seed=3)[0]])
    out = codec.decompress(files)
    assert out[0].shape == (3, 32, 48) and torch.equal(out[0], wide)
    assert torch.equal(out[1], tall)
    assert len(files[0]) > len(files[2]) * 4  # six tiles, one stream each


@pytest.mark.parametrize("head, channels", [("dmol", 1), ("categorical", 3), ("categorical", 1)])
def test_other_heads_and_greyscale_round_trip(head, channels):
    model, prior = make_models(seed=4, head=head, image_channels=channels)
    codec = Codec(model, prior)
    x = images(3, channels=channels, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(codec.decompress(codec.compress(x)), x))


def test_sequential_order_round_trips():
    model, prior = make_models(seed=6, order="sequential")
    codec = Codec(model, prior)
    x = images(2, seed=7)
    assert torch.equal(torch.stack(codec.decompress(codec.compress(x))), x)
    assert torch.equal(torch.stack(codec.decompress(codec.compress(x, lossy=True))),
                       model.reconstruct(model.encode(x)))


def test_files_cost_the_models_code_length_plus_the_header(rgb):
    model, prior, codec = rgb
    x = images(8, seed=8)
    ideal = ideal_bits(model, prior, x).total  # -log2 p(z) - log2 p(x|z) per image
    files = codec.compress(x)
    payload = torch.tensor([8.0 * (len(f) - HEADER_BYTES) for f in files], dtype=torch.float64)
    assert (payload >= ideal - 1).all()  # no file beats its own model
    assert (payload <= ideal * 1.005 + 64).all()  # the coder's few bytes and the 2^-24 floor
    lossy = codec.compress(x, lossy=True)
    rate = prior.rate_bits(model.encode(x))
    assert all(abs(8 * (len(f) - HEADER_BYTES) - r) <= 40 for f, r in zip(lossy, rate.tolist()))


def test_lossy_files_decode_to_the_mean_of_p_x_given_z(rgb):
    model, _, codec = rgb
    x = images(4, seed=9)
    out = torch.stack(codec.decompress(codec.compress(x, lossy=True)))
    assert torch.equal(out, model.reconstruct(model.encode(x)))


def test_the_callers_thread_setting_changes_no_bit_and_is_restored(rgb):
    _, _, codec = rgb
    x = images(5, seed=10)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.compress(x)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert codec.compress(x) == one
        assert torch.equal(torch.stack(codec.decompress(one)), x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_frequencies_give_every_symbol_at_least_one_count():
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 1e-12, 2e-8, 0.0]])
    f = frequencies(probs)
    assert f.dtype == np.float64 and f.shape == (2, 4)
    assert (f >= 1).all() and (f == np.floor(f)).all() and (f.sum(1) <= 2**24).all()
    assert f[0].tolist() == [(2**24 - 4) // 2 + 1] * 2 + [1.0, 1.0]
    assert f[1, 2] == math.floor(2e-8 * (2**24 - 4)) + 1  # a rare symbol keeps its small share
    assert np.array_equal(frequencies(probs.clone()), f)


# -- bad files --------------------------------------------------------------------------------


def test_every_damaged_byte_and_every_truncation_is_refused(rgb):
    _, _, codec = rgb
    (data,) = codec.compress(images(1, seed=11))
    for i in range(len(data)):  # one flipped bit anywhere
        damaged = bytearray(data)
        damaged[i] ^= 1 << (i % 8)
        with pytest.raises(CodecError):
            codec.decompress([bytes(damaged)])
    for cut in (0, 3, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 1, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecError, match="truncated|not a depthq"):
            codec.decompress([data[:cut]])


def test_the_errors_say_what_is_wrong(rgb):
    model, _, codec = rgb
    (data,) = codec.compress(images(1, seed=12))
    with pytest.raises(CodecError, match=r"not a depthq compressed file \(it starts with b'\\x89PNG'"):
        codec.decompress([b"\x89PNG\r\n\x1a\n" + data[8:]])
    with pytest.raises(CodecError, match="no .* header"):
        codec.decompress([b""])
    with pytest.raises(CodecError, match="format version 3: this depthq reads version 2 files$"):
        codec.decompress([data[:4] + b"\x03" + data[5:]])
    with pytest.raises(CodecError, match="format version 1: .*written by depthq before format 2"):
        codec.decompress([data[:4] + b"\x01" + data[5:]])
    with pytest.raises(CodecError, match="checksum does not match"):
        codec.decompress([data[:-1] + bytes([data[-1] ^ 0x80])])
    other = Codec(*make_models(seed=13))
    with pytest.raises(CodecError, match="made with another model"):
        other.decompress([data])
    assert isinstance(CodecError("x"), ValueError)


def test_a_decoder_whose_arithmetic_differs_is_refused_not_wrong(rgb, monkeypatch):
    import depthq.codec.coder as coder

    _, _, codec = rgb
    files = codec.compress(images(2, seed=14))
    exact = coder.frequencies

    def skewed(probs):  # what another platform's rounding could do to a few counts
        f = exact(probs)
        f[:, 0] += 5.0
        return f

    monkeypatch.setattr(coder, "frequencies", skewed)
    with pytest.raises(CodecError, match="does not match the file's checksum"):
        codec.decompress(files)
    with pytest.raises(CodecError, match="decoded codes do not match"):
        monkeypatch.setattr(coder, "frequencies", exact)
        lossy = codec.compress(images(2, seed=14), lossy=True)
        monkeypatch.setattr(coder, "frequencies", skewed)
        codec.decompress(lossy)


def test_bad_inputs_are_refused_with_a_clear_message(rgb):
    _, _, codec = rgb
    with pytest.raises(ValueError, match=r"expected uint8 pixels \(3, H, W\)"):
        codec.compress(images(1, channels=1))
    mse, prior = make_models(seed=15, head="mse")
    with pytest.raises(ValueError, match="only lossy"):
        Codec(mse, prior).compress(images(1))
    model, _ = make_models()
    small = PriorModel(CodeLayout.of(model.config, 32), PriorConfig(dim=16, layers=1, heads=2))
    codec32 = Codec(model, small)
    assert codec32.tile == 32
    x = images(1)[0]  # 16x16: one tile of 32, padded
    assert torch.equal(codec32.decompress(codec32.compress(x))[0], x)
    with pytest.raises(ValueError, match="at least one pixel"):
        codec.compress([torch.zeros(3, 0, 5, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="over the limit of 100 pixels: allow it with --max-pixels 256"):
        Codec(model, small, max_pixels=100).compress(x)
    with pytest.raises(ValueError, match="max_pixels must be an integer >= 1"):
        Codec(model, small, max_pixels=0)


def test_format_fields_are_where_the_documentation_says(rgb):
    _, _, codec = rgb
    x = images(1, 32, seed=16)[0][:, :, :13]  # 32 high, 13 wide: two tiles
    (data,) = codec.compress([x])
    assert HEADER_BYTES == 33
    magic, version, mode, c, t, h, w = struct.unpack_from("<4sBBBHII", data)
    assert (magic, version, mode, c, t, h, w) == (MAGIC, 2, 0, 3, TILE, 32, 13)
    assert data[17:21] == codec.autoencoder_id and data[21:25] == codec.prior_id
    assert struct.unpack_from("<I", data, 25)[0] == zlib.crc32(x.numpy().tobytes())
    assert struct.unpack_from("<I", data, 29)[0] == zlib.crc32(data[HEADER_BYTES:], zlib.crc32(data[:29]))
    # one LEB128 length (two tiles), then the two streams
    first, pos, shift = 0, HEADER_BYTES, 0
    while True:
        first |= (data[pos] & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not data[pos - 1] & 0x80:
            break
    assert 1 <= first < len(data) - pos


# -- measurement ------------------------------------------------------------------------------


def test_measure_verifies_round_trips_and_reports_consistent_figures(rgb):
    model, prior, codec = rgb
    x = images(6, seed=17)
    m = measure(model, prior, x, codec=codec)
    assert m.images == m.round_trips_verified == 6 and m.dims == 768 and m.header_bytes == HEADER_BYTES
    assert m.lossless_bits_per_dim == pytest.approx(m.lossless_payload_bits_per_dim + 8 * HEADER_BYTES / 768)
    assert abs(m.overhead) < 0.01
    assert m.model_bits_per_dim == pytest.approx(m.distortion_bits_per_dim + m.rate_bits_per_dim)
    codes = model.encode(x)
    assert m.rate_bits_per_dim == pytest.approx(prior.rate_bits(codes).mean().item() / 768)
    nll = model.head.nll(model.decode(codes), x).double().mean().item()
    assert m.distortion_bits_per_dim == pytest.approx(nll / math.log(2) / 768, rel=1e-5)
    assert m.lossy_bits_per_pixel == pytest.approx(m.lossy_payload_bits_per_pixel + 8 * HEADER_BYTES / 256)
    recon = model.reconstruct(model.encode(x)).double()
    mse = ((recon - x.double()) ** 2).mean().item()
    assert m.lossy_psnr == pytest.approx(10 * math.log10(255**2 / mse))
    assert m.compress_images_per_s > 0 and m.lossy_decompress_images_per_s > 0
    assert CodecMeasurement.from_dict(m.to_dict()) == m
    with pytest.raises(ValueError, match="schema version"):
        CodecMeasurement.from_dict({**m.to_dict(), "schema_version": 99})


def test_pillow_reference_sizes_are_one_file_per_image():
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    noise = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for fmt in ("PNG", "WEBP"):
        assert pillow_bits_per_dim(flat, fmt) < 1.0  # mostly the container
        assert pillow_bits_per_dim(noise, fmt) > 8.0  # incompressible
    assert pillow_bits_per_dim(flat[:, :1], "PNG") < 1.0  # greyscale
    with pytest.raises(ValueError, match="fmt must be one of"):
        pillow_bits_per_dim(flat, "GIF")


def test_lossy_references_run_on_the_mosaic_of_the_images():
    from depthq.codec.measure import mosaic, pillow_lossy, pillow_lossy_at_rate

    x = images(5, seed=18)
    tiled = mosaic(x)
    assert tiled.shape == (3, 2 * TILE, 3 * TILE)  # 3 columns, 2 rows, one black cell
    assert torch.equal(tiled[:, TILE:, :TILE], x[3]) and (tiled[:, TILE:, 2 * TILE :] == 0).all()
    low, high = pillow_lossy(x, "JPEG", 10), pillow_lossy(x, "JPEG", 95)
    assert low.bits_per_pixel < high.bits_per_pixel and low.psnr < high.psnr
    target = (low.bits_per_pixel + high.bits_per_pixel) / 2
    found = pillow_lossy_at_rate(x, "WEBP", target)
    assert found.fmt == "WEBP" and 1 <= found.quality <= 100
    near = [pillow_lossy(x, "WEBP", q).bits_per_pixel for q in range(1, 101)]
    assert abs(found.bits_per_pixel - target) <= min(abs(b - target) for b in near) + 1e-9
