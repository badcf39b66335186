"""Whole-image rate-distortion: Pillow anchors against direct encodes, any codec's points, BD."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from depthq.evaluate.anchors import jpeg_options
from depthq.evaluate.compressai_schema import CodecResults
from depthq.evaluate.quality import image_psnr, ms_ssim
from depthq.evaluate.rd import LossyImage, bd_against, evaluate_lossy, pillow_anchor

QUALITIES = (10, 30, 60, 90)  # 4 points: the fewest a cubic BD takes


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """MS-SSIM's convolutions in one intra-op thread: on a shared 2-core machine two threads run
    several times slower than one; the values do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos() -> tuple[list[np.ndarray], list[str]]:
    """Two real photographs at their own sizes: an odd-width colour one and a greyscale crop."""
    chelsea = np.ascontiguousarray(data.chelsea().transpose(2, 0, 1))  # (3, 300, 451)
    camera = np.ascontiguousarray(data.camera()[:200, :333][None])  # (1, 200, 333)
    return [chelsea, camera], ["chelsea", "camera"]


@pytest.fixture(scope="module")
def jpeg(photos):
    return pillow_anchor(*photos, "JPEG", QUALITIES)


def test_a_jpeg_point_is_a_direct_pillow_encode_of_the_whole_image(photos, jpeg):
    images, names = photos
    assert jpeg.settings == ("q10", "q30", "q60", "q90") and jpeg.results.name == "JPEG"
    for point, q in zip(jpeg.images, QUALITIES):
        for record, x in zip(point, images):
            buffer = io.BytesIO()
            pil = Image.fromarray(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0))
            pil.save(buffer, format="JPEG", quality=q)  # CompressAI's bench: Pillow's defaults
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
            decoded = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)
            assert record.bpp == 8 * buffer.tell() / (x.shape[1] * x.shape[2])  # whole file, whole image
            assert record.psnr_rgb == pytest.approx(image_psnr(x, decoded), abs=1e-12)
            assert record.ms_ssim_rgb == pytest.approx(ms_ssim(x, decoded), abs=1e-12)
            assert record.encoding_time > 0 and record.decoding_time > 0


def test_the_aggregate_is_the_mean_over_the_images(jpeg):
    for i, point in enumerate(jpeg.images):
        assert jpeg.results.bpp[i] == pytest.approx(np.mean([r.bpp for r in point]))
        assert jpeg.results.psnr_rgb[i] == pytest.approx(np.mean([r.psnr_rgb for r in point]))
        assert jpeg.results.ms_ssim_rgb[i] == pytest.approx(np.mean([r.ms_ssim_rgb for r in point]))
    assert [r.source for r in jpeg.images[0]] == ["chelsea", "camera"]


def test_more_quality_costs_more_bits_and_buys_more_quality(jpeg):
    r = jpeg.results
    assert list(r.bpp) == sorted(r.bpp) and list(r.psnr_rgb) == sorted(r.psnr_rgb)
    assert list(r.ms_ssim_rgb) == sorted(r.ms_ssim_rgb)


def test_webp_codes_greyscale_as_rgb_and_reads_one_channel_back(photos):
    images, names = photos
    webp = pillow_anchor(images[1:], names[1:], "WebP", (30,), ms_ssim=False)
    (record,) = webp.images[0]
    buffer = io.BytesIO()
    Image.fromarray(images[1][0]).convert("RGB").save(buffer, format="WEBP", quality=30)
    assert record.bpp == 8 * buffer.tell() / (200 * 333)
    assert webp.results.ms_ssim_rgb is None and "MS-SSIM not measured" in webp.notes[0]
    assert "method=4" in webp.results.description and "Pillow version" in webp.results.description


def test_stronger_pillow_options_can_be_given(photos, jpeg):
    """Optimised Huffman tables: the same decoded pixels in smaller files, so a negative BD-rate."""
    optimised = pillow_anchor(*photos, "JPEG", QUALITIES, options=lambda q: jpeg_options(q, 2, optimize=True))
    assert optimised.results.psnr_rgb == pytest.approx(jpeg.results.psnr_rgb, abs=1e-12)
    assert all(a < b for a, b in zip(optimised.results.bpp, jpeg.results.bpp))
    comparison = bd_against(optimised.results, jpeg.results)
    assert comparison.bd_rate < 0 and comparison.bd_quality > 0 and comparison.anchor == "JPEG"


def test_bd_against_an_anchor_on_both_metrics(jpeg):
    halved = CodecResults(
        "half", "", tuple(b / 2 for b in jpeg.results.bpp), jpeg.results.psnr_rgb, jpeg.results.ms_ssim_rgb
    )
    for metric in ("psnr-rgb", "ms-ssim-db-rgb"):
        assert bd_against(jpeg.results, jpeg.results, metric).bd_rate == pytest.approx(0.0, abs=1e-9)
        assert bd_against(halved, jpeg.results, metric, "pchip").bd_rate == pytest.approx(-50.0, abs=1e-9)
    with pytest.raises(ValueError, match="has no 'ms-ssim-db-rgb'"):
        bd_against(CodecResults("x", "", jpeg.results.bpp, jpeg.results.psnr_rgb), jpeg.results, "ms-ssim-db-rgb")
    three = CodecResults("three", "", jpeg.results.bpp[:3], jpeg.results.psnr_rgb[:3])
    with pytest.raises(ValueError, match="three against JPEG on psnr-rgb: test: cubic BD needs at least 4 points"):
        bd_against(three, jpeg.results)


def _posterise(x: np.ndarray, step: int) -> np.ndarray:
    return (x // step * step + step // 2).clip(0, 255).astype(np.uint8)


def test_any_codecs_points_become_compressai_results(photos, tmp_path):
    images, names = photos
    points = [[LossyImage(1000 * step, _posterise(x, step), 0.5, 0.25) for x in images] for step in (32, 8)]
    rd = evaluate_lossy(images, names, points, name="posterise", description="test codec", settings=["s32", "s8"])
    first = rd.images[0][0]
    assert first.bpp == 8 * 32000 / (300 * 451) and first.psnr_rgb == pytest.approx(
        image_psnr(images[0], _posterise(images[0], 32))
    )
    assert rd.results.encoding_time == (0.5, 0.5) and rd.results.psnr_rgb[1] > rd.results.psnr_rgb[0]
    assert CodecResults.read(rd.results.write(tmp_path / "posterise.json")) == rd.results


def test_small_images_leave_ms_ssim_out_and_say_why(photos):
    images, names = photos
    small = [np.ascontiguousarray(images[0][:, :120, :200]), images[1]]
    rd = pillow_anchor(small, names, "JPEG", (30,))
    assert rd.results.ms_ssim_rgb is None and "chelsea" in rd.notes[0] and "120x200" in rd.notes[0]
    assert rd.images[0][0].ms_ssim_rgb is None and rd.images[0][1].ms_ssim_rgb is not None


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda imgs, pts: pts[0][0].__class__(100, imgs[0][:, :-1]), "decoded as"),
        (lambda imgs, pts: LossyImage(100, imgs[0]), "decodes exactly"),
        (lambda imgs, pts: LossyImage(0, pts[0][0].decoded), "positive integer"),
    ],
)
def test_bad_codec_output_raises_one_line(photos, change, match):
    images, names = photos
    points = [[LossyImage(100, _posterise(x, 16)) for x in images]]
    points[0][0] = change(images, points)
    with pytest.raises(ValueError, match=match):
        evaluate_lossy(images, names, points, name="bad", description="")


def test_bad_arguments_raise_one_line(photos):
    images, names = photos
    with pytest.raises(ValueError, match="one name per image"):
        evaluate_lossy(images, names[:1], [], name="x", description="")
    with pytest.raises(ValueError, match="unique"):
        pillow_anchor(images, ["a", "a"], "JPEG", (30,))
    with pytest.raises(ValueError, match="uint8"):
        pillow_anchor([images[0].astype(np.float32)], ["a"], "JPEG", (30,))
    with pytest.raises(ValueError, match="codec must be one of"):
        pillow_anchor(images, names, "PNG")
    with pytest.raises(ValueError, match="qualities"):
        pillow_anchor(images, names, "JPEG", (101,))
    with pytest.raises(ValueError, match="one coded image per image"):
        evaluate_lossy(images, names, [[LossyImage(100, _posterise(images[0], 16))]], name="x", description="")
