"""PSNR, SSIM and MS-SSIM: identities, orderings, an independent reference, sizes, bad inputs."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate1d
from skimage import data
from skimage.metrics import structural_similarity

from depthq.evaluate.quality import (
    MS_SSIM_MIN_SIDE,
    image_psnr,
    ms_ssim,
    ms_ssim_db,
    ms_ssim_unavailable,
    ssim,
    ssim_unavailable,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """MS-SSIM's convolutions in one intra-op thread: on a shared 2-core machine two threads run
    several times slower than one; the values do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _chw(hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hwc.transpose(2, 0, 1)) if hwc.ndim == 3 else hwc[None]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A (C, H, W) uint8 image through Pillow's JPEG at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(
        buffer, format="JPEG", quality=quality
    )
    return _chw(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))))


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return _chw(data.camera()[64:256, 96:288])  # (1, 192, 192): sides even at every scale, a real photograph


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return _chw(data.astronaut()[:192, 160:352])  # (3, 192, 192)


@pytest.mark.parametrize("name", ["grey", "rgb"])
def test_identical_images_score_perfectly(name, request):
    x = request.getfixturevalue(name)
    assert image_psnr(x, x) == math.inf
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["grey", "rgb"])
def test_stronger_jpeg_compression_scores_lower_on_every_metric(name, request):
    x = request.getfixturevalue(name)
    decoded = [_jpeg(x, q) for q in (5, 30, 90)]
    for metric in (image_psnr, ssim, ms_ssim):
        values = [metric(x, d) for d in decoded]
        assert values[0] < values[1] < values[2] < 1e9, (metric.__name__, values)


def test_more_noise_scores_lower(grey):
    rng = np.random.default_rng(0)
    noisy = [np.clip(grey + rng.normal(0, s, grey.shape), 0, 255).astype(np.uint8) for s in (2, 8, 32)]
    values = [ms_ssim(grey, n) for n in noisy]
    assert values[0] > values[1] > values[2] > 0
    # the PSNR of uniform-ish Gaussian noise is close to 10 log10(255^2 / sigma^2) (clipping aside)
    assert image_psnr(grey, noisy[1]) == pytest.approx(10 * math.log10(255**2 / 64), abs=0.3)


def test_psnr_is_from_the_mse_over_all_sub_pixels():
    a = np.zeros((3, 4, 5), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 60  # one sub-pixel of 60 sub-pixels off by 60: MSE = 60
    assert image_psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 60))


@pytest.mark.parametrize("name", ["grey", "rgb"])
def test_ssim_matches_scikit_image_the_packages_own_reference(name, request):
    """pytorch-msssim's own test suite checks it against scikit-image with these settings."""
    x = request.getfixturevalue(name)
    y = _jpeg(x, 20)
    reference = structural_similarity(
        x.transpose(1, 2, 0).astype(np.float64),
        y.transpose(1, 2, 0).astype(np.float64),
        win_size=11,
        sigma=1.5,
        gaussian_weights=True,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2,
    )
    assert ssim(x, y) == pytest.approx(reference, abs=2e-5)


def _ms_ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM from its definition (Wang, Simoncelli, Bovik 2003), float64 numpy, sides even at
    every scale: per channel, cs at scales 1-4 and SSIM at scale 5, 11-tap Gaussian (sigma 1.5)
    windows kept inside the image, 2x2 mean pooling; then the mean over the channels."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):  # the window inside the image only: filter, then drop 5 pixels each side
        return correlate1d(correlate1d(z, taps, axis=0), taps, axis=1)[5:-5, 5:-5]

    values = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        total = 1.0
        for scale, w in enumerate(weights):
            ma, mb = blur(a), blur(b)
            va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
            cs = (2 * cov + c2) / (va + vb + c2)
            term = cs if scale < 4 else cs * (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            total *= max(float(term.mean()), 0.0) ** w
            a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean((1, 3))
            b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2).mean((1, 3))
        values.append(total)
    return float(np.mean(values))


@pytest.mark.parametrize("name", ["grey", "rgb"])
def test_ms_ssim_matches_its_definition(name, request):
    x = request.getfixturevalue(name)
    y = _jpeg(x, 10)
    assert ms_ssim(x, y) == pytest.approx(_ms_ssim_reference(x, y), abs=1e-9)


def test_torchmetrics_ms_ssim_is_another_number(grey):
    """Why quality.py uses pytorch-msssim (CompressAI's choice) and not torchmetrics."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    y = _jpeg(grey, 10)
    theirs = float(
        multiscale_structural_similarity_index_measure(
            torch.tensor(y[None], dtype=torch.float64), torch.tensor(grey[None], dtype=torch.float64), data_range=255.0
        )
    )
    assert abs(theirs - ms_ssim(grey, y)) > 1e-4


def test_greyscale_equals_the_image_replicated_to_rgb(grey):
    y = _jpeg(grey, 10)
    assert ms_ssim(grey, y) == pytest.approx(ms_ssim(grey.repeat(3, 0), y.repeat(3, 0)), abs=1e-12)
    assert image_psnr(grey, y) == pytest.approx(image_psnr(grey.repeat(3, 0), y.repeat(3, 0)))


def test_small_images_have_no_ms_ssim_and_say_why(rgb):
    assert MS_SSIM_MIN_SIDE == 161
    small = np.ascontiguousarray(rgb[:, :160, :])  # 160 x 192: one side too short
    assert ms_ssim(small, small) is None
    assert "> 160" in ms_ssim_unavailable(160, 192) and "160x192" in ms_ssim_unavailable(160, 192)
    assert ms_ssim_unavailable(161, 161) is None
    assert ms_ssim(rgb[:, :161, :161], _jpeg(np.ascontiguousarray(rgb[:, :161, :161]), 30)) < 1.0
    tiny = rgb[:, :10, :40]
    assert ssim(tiny, tiny) is None and "10x40" in ssim_unavailable(10, 40)
    assert ssim(rgb[:, :11, :11], rgb[:, :11, :11]) == pytest.approx(1.0)


def test_torch_tensors_are_accepted(rgb):
    y = _jpeg(rgb, 30)
    assert ms_ssim(torch.from_numpy(rgb), torch.from_numpy(y)) == pytest.approx(ms_ssim(rgb, y))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 8, 8), np.float32), "uint8 image"),
        (np.zeros((8, 8), np.uint8), "uint8 image"),
        (np.zeros((2, 8, 8), np.uint8), "C = 1 or 3"),
        (np.zeros((3, 8, 9), np.uint8), "shape"),
    ],
)
def test_bad_inputs_raise_one_line(bad, match):
    with pytest.raises(ValueError, match=match):
        image_psnr(np.zeros((3, 8, 8), np.uint8), bad)


def test_ms_ssim_in_db():
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(1.0) == math.inf
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ms_ssim_db(1.5)
