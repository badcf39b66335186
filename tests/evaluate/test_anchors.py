"""Codec anchors: sizes and PSNR against direct Pillow encodes, mosaics, interpolation, greyscale, JSON."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from depthq.evaluate import anchors as anchors_module
from depthq.evaluate.anchors import (
    CodecAnchors,
    Interpolated,
    RateDistortionCurve,
    RatePoint,
    measure_anchors,
    mosaics,
)


def _images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random images (a low-resolution noise field upsampled): compressible, not trivial."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, c, size // 4, size // 4)).astype(np.float64)
    up = low.repeat(4, axis=2).repeat(4, axis=3)[:, :, :size, :size]
    return np.clip(up + rng.normal(0, 6, up.shape), 0, 255).astype(np.uint8)


def _size(image: Image.Image, **options) -> int:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.tell()


@pytest.fixture(scope="module")
def colour() -> tuple[np.ndarray, CodecAnchors]:
    x = _images(13)  # 13: a prime, so the mosaic has empty cells
    return x, measure_anchors(x, rates=(0.5, 2.0), jpeg_qualities=(5, 30, 80), webp_qualities=(10, 50, 90))


def test_mosaics_hold_every_image_once_with_edge_padding():
    x = _images(7, c=1, size=28)
    (mosaic, count), = mosaics(x, block=16)  # cells of 32x32 for 28x28 images
    assert count == 7 and mosaic.shape[0] % 32 == 0 and mosaic.shape[1] % 32 == 0
    cells = anchors_module._cells(mosaic, 7, 28, 28, 16)  # (7, 28, 28, 1)
    np.testing.assert_array_equal(cells.transpose(0, 3, 1, 2), x)
    np.testing.assert_array_equal(mosaic[:28, 28:32, 0], np.repeat(x[0, 0, :, 27:28], 4, axis=1))  # edge padding
    all_cells = anchors_module._cells(mosaic, 99, 32, 32, 16)
    assert len(all_cells) == 8 and (all_cells[7] == 0).all()  # 4 x 2 cells, the empty one zero


def test_many_images_are_split_into_mosaics_of_bounded_side(monkeypatch):
    monkeypatch.setattr(anchors_module, "MAX_SIDE", 100)  # at most 3 x 3 cells of 32
    x = _images(20)
    parts = mosaics(x, block=16)
    assert [count for _, count in parts] == [9, 9, 2] and all(max(m.shape[:2]) <= 100 for m, _ in parts)
    back = np.concatenate([anchors_module._cells(m, k, 32, 32, 16) for m, k in parts])
    np.testing.assert_array_equal(back.transpose(0, 3, 1, 2), x)


def test_lossless_bits_per_dim_are_the_file_sizes(colour):
    x, anchors = colour
    per_file = sum(_size(Image.fromarray(im.transpose(1, 2, 0)), format="PNG", optimize=True, compress_level=9)
                   for im in x)
    png = anchors.lossless_anchor("PNG")
    assert png.bits_per_dim == pytest.approx(8 * per_file / x.size)
    (mosaic, _), = mosaics(x)
    assert png.bits_per_dim_tiled == pytest.approx(8 * _size(Image.fromarray(mosaic), format="PNG", optimize=True,
                                                                 compress_level=9) / x.size)
    webp = anchors.lossless_anchor("WebP lossless")
    assert 0 < webp.bits_per_dim_tiled < 8 and "method=5" in webp.settings


def test_a_curve_point_is_a_direct_encode_of_the_mosaic(colour):
    x, anchors = colour
    (mosaic, count), = mosaics(x, block=16)
    buffer = io.BytesIO()
    Image.fromarray(mosaic).save(buffer, format="JPEG", quality=30, optimize=True, subsampling=2)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(np.float64)
    err = anchors_module._cells(decoded, count, 32, 32, 16) - anchors_module._cells(mosaic, count, 32, 32, 16)
    point = next(p for p in anchors.curve("JPEG 4:2:0").points if p.setting == "q30")
    assert point.bits_per_pixel == pytest.approx(8 * buffer.tell() / (13 * 32 * 32))
    assert point.psnr == pytest.approx(10 * math.log10(255**2 / np.mean(err**2)))
    for curve in anchors.curves:  # more quality, more bits and less error
        rates = [p.bits_per_pixel for p in curve.points]
        assert rates == sorted(rates) and [p.psnr for p in curve.points] == sorted(p.psnr for p in curve.points)
    assert [c.codec for c in anchors.curves] == ["JPEG 4:2:0", "JPEG 4:4:4", "WebP"]


def test_interpolation_is_linear_in_log_rate_and_clamps_outside():
    curve = RateDistortionCurve("toy", "", (RatePoint("a", 0.1, 20.0), RatePoint("b", 1.6, 32.0),
                                            RatePoint("c", 0.4, 26.0), RatePoint("worse", 0.8, 25.0)))
    assert [p.setting for p in curve.frontier()] == ["a", "c", "b"]  # "worse" costs more for less
    assert curve.psnr_at(0.2) == Interpolated(pytest.approx(23.0), False)  # halfway in log rate
    assert curve.rate_at(29.0) == Interpolated(pytest.approx(0.8), False)
    assert curve.psnr_at(0.4) == Interpolated(26.0, False)
    assert curve.psnr_at(0.05) == Interpolated(20.0, True) and curve.psnr_at(3.0) == Interpolated(32.0, True)
    assert curve.rate_at(40.0) == Interpolated(pytest.approx(1.6), True)
    with pytest.raises(ValueError, match="bits_per_pixel must be > 0"):
        curve.psnr_at(0.0)
    with pytest.raises(ValueError, match="no measured point"):
        RateDistortionCurve("empty", "", ()).psnr_at(1.0)


def test_rates_are_read_off_every_curve_and_the_best_jpeg(colour):
    _, anchors = colour
    at = {(a.codec, a.bits_per_pixel): a for a in anchors.at_rates}
    for curve in anchors.curves:
        assert at[(curve.codec, 0.5)].psnr == curve.psnr_at(0.5).value
    best = at[("JPEG best subsampling", 2.0)]
    name, value = anchors.best_psnr_at(2.0)
    assert best.chosen == name and best.psnr == value.value
    assert value.value == max(anchors.curve(c).psnr_at(2.0).value for c in ("JPEG 4:2:0", "JPEG 4:4:4"))


def test_greyscale_uses_one_jpeg_curve_and_counts_webp_honestly():
    x = _images(6, c=1, size=28)
    anchors = measure_anchors(torch.from_numpy(x), rates=(1.0,), jpeg_qualities=(20, 80), webp_qualities=(20, 80))
    assert [c.codec for c in anchors.curves] == ["JPEG", "WebP"] and anchors.channels == 1
    per_file = sum(_size(Image.fromarray(im[0]).convert("RGB"), format="WEBP", lossless=True, quality=100, method=2)
                   for im in x)
    assert anchors.lossless_anchor("WebP lossless").bits_per_dim == pytest.approx(8 * per_file / (6 * 28 * 28))
    assert any("no greyscale mode" in n for n in anchors.notes)
    assert all(p.psnr > 20 for c in anchors.curves for p in c.points)


def test_json_round_trip_and_errors(colour):
    _, anchors = colour
    data = json.loads(json.dumps(anchors.to_dict()))
    assert CodecAnchors.from_dict(data) == anchors and data["schema"] == 1
    with pytest.raises(ValueError, match="expected schema 1"):
        CodecAnchors.from_dict({**data, "schema": 0})
    with pytest.raises(KeyError, match="no anchor for codec 'GIF'"):
        anchors.curve("GIF")
    with pytest.raises(ValueError, match=r"uint8 images \(N, C, H, W\) with C = 1 or 3"):
        measure_anchors(np.zeros((2, 2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8 images"):
        measure_anchors(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="rates are bits per pixel > 0"):
        measure_anchors(_images(2), rates=(0.0,))


def test_anchors_are_read_at_new_rates_without_encoding_and_keyed_by_images(colour):
    x, anchors = colour
    again = anchors.with_rates([1.0])
    assert {a.bits_per_pixel for a in again.at_rates} == {1.0} and again.curves == anchors.curves
    assert [a.codec for a in again.at_rates] == ["JPEG 4:2:0", "JPEG 4:4:4", "WebP", "JPEG best subsampling"]
    with pytest.raises(ValueError, match="rates are bits per pixel > 0"):
        anchors.with_rates([-1.0])
    key = anchors_module.anchor_key(x, lossless=True)
    assert key == anchors_module.anchor_key(torch.from_numpy(x.copy()), lossless=True)
    changed = x.copy()
    changed[0, 0, 0, 0] ^= 1
    assert anchors_module.anchor_key(changed, lossless=True) != key != anchors_module.anchor_key(x, lossless=False)
