import math

import pytest
import torch
import torch.nn.functional as F

from depthq.models.heads import HEADS, LikelihoodHead, make_head, normalise


def pixels(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def pack(logits, means, log_scales, coeffs):
    """dmol params by the documented layout.

    logits (N, n), means (N, C, n), log-scales (N, C, n), coeffs (N, Q, n) -> (N, P, 1, 1).
    """
    flat = [logits, means.flatten(1), log_scales.flatten(1), coeffs.flatten(1)]
    return torch.cat(flat, 1)[:, :, None, None]


def random_mixture(n_pixels, channels, mixtures, seed=0, mean_scale=0.6, log_scale=(-4.0, -1.0)):
    g = torch.Generator().manual_seed(seed)
    q = channels * (channels - 1) // 2
    lo, hi = log_scale
    return (
        torch.randn(n_pixels, mixtures, generator=g),
        torch.randn(n_pixels, channels, mixtures, generator=g) * mean_scale,
        lo + (hi - lo) * torch.rand(n_pixels, channels, mixtures, generator=g),
        torch.randn(n_pixels, q, mixtures, generator=g),
    )


def rgb_means(means, coeffs, x):
    """PixelCNN++ coupling written out for RGB: (N, 3, n), (N, 3, n), x (N, 3) -> (N, 3, n)."""
    r, g = x[:, 0, None], x[:, 1, None]
    t = torch.tanh(coeffs)
    return torch.stack(
        [means[:, 0], means[:, 1] + t[:, 0] * r, means[:, 2] + t[:, 1] * r + t[:, 2] * g], 1
    )


# ---------------------------------------------------------------- categorical


def test_categorical_uniform_logits_give_exactly_8_bits_per_dim():
    head = make_head("categorical", 3)
    x = pixels((2, 3, 5, 4))
    nll = head.nll(torch.zeros(2, 768, 5, 4), x)
    assert nll.shape == (2,) and nll.dtype == torch.float32
    assert torch.allclose(nll / (3 * 5 * 4 * math.log(2)), torch.full((2,), 8.0), atol=1e-5)
    loss = head.loss(torch.zeros(2, 768, 5, 4), x)
    assert loss.item() == pytest.approx(8 * math.log(2), abs=1e-5)  # nats per dim


def test_categorical_nll_equals_log_softmax_by_hand():
    head = make_head("categorical", 2)
    params = torch.randn(2, 512, 3, 2, generator=torch.Generator().manual_seed(1)) * 3
    x = pixels((2, 2, 3, 2), seed=2)
    expected = torch.zeros(2, dtype=torch.float64)
    for b in range(2):
        for c in range(2):
            for i in range(3):
                for j in range(2):
                    logits = params[b, c * 256 : (c + 1) * 256, i, j].double()
                    log_z = torch.log(torch.exp(logits).sum())
                    expected[b] -= logits[int(x[b, c, i, j])] - log_z
    assert torch.allclose(head.nll(params, x).double(), expected, rtol=1e-5)


def test_categorical_mode_and_sample_pick_the_planted_value():
    head = make_head("categorical", 3)
    target = pixels((2, 3, 4, 4), seed=3)
    params = torch.zeros(2, 768, 4, 4)
    for c in range(3):  # channel c's logits are params[:, c*256:(c+1)*256]
        params[:, c * 256 : (c + 1) * 256].scatter_(1, target[:, c : c + 1].long(), 50.0)
    mode = head.mode(params)
    assert mode.dtype == torch.uint8 and mode.shape == (2, 3, 4, 4)
    assert torch.equal(mode, target)
    sample = head.sample(params, torch.Generator().manual_seed(0))
    assert sample.dtype == torch.uint8 and torch.equal(sample, target)


def test_categorical_sample_follows_the_softmax_and_is_reproducible():
    head = make_head("categorical", 1)
    logits = torch.randn(256, generator=torch.Generator().manual_seed(4)) * 2
    params = logits[None, :, None, None].expand(1, 256, 200, 200)
    s1 = head.sample(params, torch.Generator().manual_seed(5))
    s2 = head.sample(params, torch.Generator().manual_seed(5))
    assert torch.equal(s1, s2)
    freq = torch.bincount(s1.flatten().long(), minlength=256).double() / s1.numel()
    assert 0.5 * (freq - logits.double().softmax(0)).abs().sum() < 0.05


# ---------------------------------------------------------------- dmol


def dmol_probs_of_all_values(head, params):
    """Probabilities of each of the 256 values of every sub-pixel: (N, P, 1, 1), C=1 -> (256, N)."""
    n = params.shape[0]
    x = torch.arange(256).repeat_interleave(n).to(torch.uint8).view(-1, 1, 1, 1)
    nll = head.nll(params.repeat(256, 1, 1, 1), x).view(256, n)
    return torch.exp(-nll.double())


def test_dmol_probabilities_of_a_subpixel_sum_to_one():
    head = make_head("dmol", 1)
    params = torch.randn(1, 30, 2, 2, generator=torch.Generator().manual_seed(6)) * 2
    per_pixel = params.permute(0, 2, 3, 1).reshape(4, 30, 1, 1)  # each pixel its own image
    total = dmol_probs_of_all_values(head, per_pixel).sum(0)
    assert torch.allclose(total, torch.ones(4, dtype=torch.float64), atol=1e-5)


EDGES = [-1 + 1 / 255, -1 + 2 / 255, 1 - 1 / 255]  # a bin edge, a bin centre, the last edge


@pytest.mark.parametrize("mean", [-50.0, -3.0, -1.0, 0.0, 0.5, 1.0, 4.0, 50.0, *EDGES])
def test_dmol_probabilities_sum_to_one_at_extreme_params(mean):
    head = make_head("dmol", 1)
    params = torch.zeros(5, 30)
    params[:, :10] = torch.randn(10, generator=torch.Generator().manual_seed(7)) * 20
    params[:, 10:20] = mean
    log_scales = torch.tensor([-7.0, -30.0, -2.0, 2.0, 10.0, 100.0])  # -30 clamps to -7
    params = params.repeat(2, 1)[:6]
    params[:, 20:30] = log_scales[:, None]
    total = dmol_probs_of_all_values(head, params[:, :, None, None]).sum(0)
    assert torch.allclose(total, torch.ones(6, dtype=torch.float64), atol=1e-5)


def test_dmol_rgb_joint_probabilities_sum_to_one():
    head = make_head("dmol", 3, mixtures=2)
    params = pack(*random_mixture(1, 3, 2, seed=8, mean_scale=0.5, log_scale=(-3.5, -1.5)))
    reds = 8  # red values per chunk keeps memory low
    x = torch.empty(reds, 3, 256, 256, dtype=torch.uint8)  # one image per red value
    x[:, 1] = torch.arange(256).view(256, 1)  # green down the rows, blue across the columns
    x[:, 2] = torch.arange(256).view(1, 256)
    many = params.expand(reds, -1, 256, 256)
    total = torch.zeros((), dtype=torch.float64)
    for r in range(0, 256, reds):
        x[:, 0] = torch.arange(r, r + reds).view(reds, 1, 1)
        total += torch.exp(head.log_prob(many, x).double()).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_dmol_two_channel_joint_probabilities_sum_to_one():
    # general C: channel 1 coupled to channel 0 by the single coefficient pair (1, 0)
    head = make_head("dmol", 2, mixtures=3)
    params = pack(*random_mixture(1, 2, 3, seed=20, log_scale=(-5.0, 0.0)))
    x = torch.stack(torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij"))
    log_p = head.log_prob(params.expand(1, -1, 256, 256), x[None].to(torch.uint8))  # (1, 256, 256)
    assert torch.exp(log_p.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def brute_force_rgb_nll(logits, means, log_scales, coeffs, x):
    """-log p of RGB pixels x (N, 3) uint8, plainly in float64: (N,)."""
    logits, means, log_scales, coeffs = (t.double() for t in (logits, means, log_scales, coeffs))
    xn = x.double() / 127.5 - 1
    mean = rgb_means(means, coeffs, xn)  # (N, 3, n)
    s = torch.exp(log_scales.clamp(min=-7))
    cdf = lambda v: torch.sigmoid((v - mean) / s)  # noqa: E731
    up = torch.where(x == 255, torch.tensor(math.inf, dtype=torch.float64), xn + 1 / 255)
    lo = torch.where(x == 0, torch.tensor(-math.inf, dtype=torch.float64), xn - 1 / 255)
    per_channel = cdf(up[:, :, None]) - cdf(lo[:, :, None])  # (N, 3, n)
    weights = torch.softmax(logits, -1)  # (N, n)
    return -torch.log((weights * per_channel.prod(1)).sum(-1))


def test_dmol_rgb_nll_equals_plain_brute_force():
    mix = random_mixture(64, 3, 10, seed=9)
    x = pixels((64, 3), seed=10)
    edges = [[0, 0, 0], [255, 255, 255], [0, 128, 255], [255, 3, 0]]
    x[:4] = torch.tensor(edges, dtype=torch.uint8)
    # pixels 4..7: scales below the clamp, means 0.6 half-bins above the value, no coupling
    x[4:8] = torch.tensor([[10, 100, 200], [1, 254, 128], [50, 51, 52], [0, 7, 254]])
    mix[1][4:8] = (x[4:8, :, None].double() / 127.5 - 1 + 0.6 / 255).float()
    mix[2][4:8] = -9.0  # the clamp to -7 puts ~15% of the mass in the next bin
    mix[3][4:8] = 0.0
    head = make_head("dmol", 3)
    got = head.nll(pack(*mix), x[:, :, None, None])
    # atol: at the smallest scale fp32 bin edges alone are off by ~1e-5 nats
    assert torch.allclose(got.double(), brute_force_rgb_nll(*mix, x), rtol=1e-5, atol=5e-5)
    # the per-pixel log_prob of a 1x1 image is minus its nll
    assert torch.equal(head.log_prob(pack(*mix), x[:, :, None, None]).flatten(), -got)


def pixelcnnpp_log_prob(logits, means, log_scales, coeffs, x):
    """The classic PixelCNN++ / VDVAE loss with its pdf fallback, in float64.

    Returns log p (N,) and whether the fallback was used anywhere in the pixel (N,).
    """
    logits, means, log_scales, coeffs = (t.double() for t in (logits, means, log_scales, coeffs))
    xn = (x.double() / 127.5 - 1)[:, :, None]  # (N, 3, 1)
    log_scales = log_scales.clamp(min=-7.0)
    centered = xn - rgb_means(means, coeffs, xn[:, :, 0])
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)
    log_one_minus_cdf_min = -F.softplus(min_in)
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    inner = torch.where(
        cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5)
    )
    log_probs = torch.where(
        xn < -0.999, log_cdf_plus, torch.where(xn > 0.999, log_one_minus_cdf_min, inner)
    )
    interior = (xn > -0.999) & (xn < 0.999)
    fallback = ((cdf_delta <= 1e-5) & interior).flatten(1).any(1)
    mixed = log_probs.sum(1) + torch.log_softmax(logits, -1)
    return torch.logsumexp(mixed, -1), fallback


def test_dmol_matches_pixelcnnpp_where_its_fallback_is_not_used():
    mix = random_mixture(512, 3, 10, seed=11, mean_scale=0.3, log_scale=(-2.0, 0.0))
    x = pixels((512, 3), seed=12)
    x[:64, 0] = 0  # some edge bins
    x[64:128, 2] = 255
    log_p, fallback = pixelcnnpp_log_prob(*mix, x)
    got = make_head("dmol", 3).nll(pack(*mix), x[:, :, None, None]).double()
    keep = ~fallback
    assert keep.sum() > 256  # the comparison covers most pixels
    assert torch.allclose(got[keep], -log_p[keep], rtol=1e-5)


def test_dmol_mode_is_the_coupled_mean_of_the_dominant_component():
    n, pixels_ = 4, 64
    logits, means, _, coeffs = random_mixture(pixels_, 3, n, seed=13)
    dominant = torch.arange(pixels_) % n
    logits[torch.arange(pixels_), dominant] = 20.0
    means[0, :, 0] = torch.tensor([3.0, -3.0, 0.2])  # clamps to 255, then 0
    log_scales = torch.full((pixels_, 3, n), -7.0)
    mode = make_head("dmol", 3, mixtures=n).mode(pack(logits, means, log_scales, coeffs))
    assert mode.dtype == torch.uint8 and mode.shape == (pixels_, 3, 1, 1)

    for p in range(pixels_):
        k, decided = dominant[p].item(), []
        for c in range(3):  # the mean of channel c is coupled to the decided levels of r, g
            mean = means[p, c, k].item()
            pairs = {1: [(0, 0)], 2: [(1, 0), (2, 1)]}.get(c, [])  # (coefficient, channel)
            for q, i in pairs:
                mean += math.tanh(coeffs[p, q, k].item()) * (decided[i] / 127.5 - 1)
            decided.append(round((min(max(mean, -1.0), 1.0) + 1) * 127.5))
        assert mode[p, :, 0, 0].tolist() == decided
    assert mode[0, :2, 0, 0].tolist() == [255, 0]


def test_dmol_samples_are_reproducible_levels():
    head = make_head("dmol", 3)
    params = torch.randn(2, 100, 8, 8, generator=torch.Generator().manual_seed(14)) * 3
    s1 = head.sample(params, torch.Generator().manual_seed(0))
    s2 = head.sample(params, torch.Generator().manual_seed(0))
    s3 = head.sample(params, torch.Generator().manual_seed(1))
    assert s1.dtype == torch.uint8 and s1.shape == (2, 3, 8, 8)
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def test_dmol_samples_follow_the_coupled_rgb_likelihood():
    # narrow components: all the mass lies in a small box of levels around the means
    head = make_head("dmol", 3, mixtures=2)
    logits = torch.tensor([[0.3, -0.3]])
    means = torch.tensor([[[0.10, 0.12], [-0.05, 0.0], [0.02, -0.02]]])
    log_scales = torch.full((1, 3, 2), -5.0)
    coeffs = torch.tensor([[[0.5, 1.0], [-0.5, 0.3], [0.8, -0.6]]])
    params = pack(logits, means, log_scales, coeffs)

    samples = head.sample(params.expand(1, -1, 300, 300), torch.Generator().manual_seed(15))
    triples = samples.flatten(2)[0].T.long()  # (90000, 3)
    lo = triples.min(0).values
    size = triples.max(0).values - lo + 1
    box = torch.stack(torch.meshgrid(*[torch.arange(int(s)) for s in size], indexing="ij"), -1)
    box = (box.reshape(-1, 3) + lo).to(torch.uint8)  # every triple in the samples' range
    nll = head.nll(params.expand(len(box), -1, -1, -1), box[:, :, None, None])
    probs = torch.exp(-nll.double())
    assert probs.sum() > 0.99  # the box holds the distribution
    index = ((triples - lo) * torch.tensor([size[1] * size[2], size[2], 1])).sum(1)
    freq = torch.bincount(index, minlength=len(box)).double() / len(triples)
    assert 0.5 * (freq - probs).abs().sum() < 0.05


def test_dmol_gradients_are_finite_at_extreme_params():
    head = make_head("dmol", 3)
    params = torch.randn(2, 100, 4, 4, generator=torch.Generator().manual_seed(16)) * 30
    params.requires_grad_(True)
    x = pixels((2, 3, 4, 4), seed=17)
    x[0] = 0
    x[1, :, :2] = 255
    loss = head.loss(params, x)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(head.nll(params, x).mean().item() / 48, rel=1e-6)
    loss.backward()
    assert torch.isfinite(params.grad).all()


# ---------------------------------------------------------------- mse


def test_mse_head_is_a_distortion_without_likelihood():
    head = make_head("mse", 3)
    assert head.has_likelihood is False and head.name == "mse"
    params = torch.randn(2, 3, 4, 4)
    x = pixels((2, 3, 4, 4))
    expected = F.mse_loss(params, x.float() / 127.5 - 1)
    assert head.loss(params, x).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="without a likelihood.*categorical or dmol"):
        head.nll(params, x)


def test_mse_mode_rounds_predictions_to_levels():
    head = make_head("mse", 1)
    x = pixels((2, 1, 5, 5), seed=18)
    noisy = normalise(x) + (torch.rand(2, 1, 5, 5) - 0.5) / 192  # within a third of a level
    assert torch.equal(head.mode(noisy), x)
    assert torch.equal(head.sample(noisy), x)
    assert head.mode(torch.tensor([-5.0, 5.0]).view(1, 1, 1, 2)).flatten().tolist() == [0, 255]


# ---------------------------------------------------------------- all heads


def test_normalise_maps_levels_to_minus_one_one():
    assert normalise(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="uint8"):
        normalise(torch.rand(3))


def test_make_head_rejects_unknown_names_and_bad_sizes():
    with pytest.raises(ValueError, match="categorical, dmol, mse"):
        make_head("gaussian", 3)
    with pytest.raises(ValueError, match="image_channels"):
        make_head("dmol", 0)
    with pytest.raises(ValueError, match="mixtures"):
        make_head("dmol", 3, mixtures=0)


@pytest.mark.parametrize("c", [1, 3])
def test_param_channels_follow_the_formulas(c):
    assert make_head("categorical", c).param_channels(c) == 256 * c
    assert make_head("mse", c).param_channels(c) == c
    assert make_head("dmol", c).param_channels(c) == {1: 30, 3: 100}[c]
    assert make_head("dmol", c, mixtures=5).param_channels(c) == 5 * (1 + 2 * c + c * (c - 1) // 2)
    for name in HEADS:
        head = make_head(name, c)
        assert isinstance(head, LikelihoodHead) and head.name == name
        assert head.param_channels() == head.param_channels(c)
        assert list(head.parameters()) == []


@pytest.mark.parametrize("name", ["categorical", "dmol"])
def test_half_precision_params_give_fp32_nll(name):
    head = make_head(name, 3)
    params = (torch.randn(2, head.param_channels(), 4, 4) * 2).bfloat16()
    x = pixels((2, 3, 4, 4), seed=19)
    nll = head.nll(params, x)
    assert nll.dtype == torch.float32
    assert torch.allclose(nll, head.nll(params.float(), x), rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(head.nll(params, x), nll, rtol=1e-6)
    assert head.mode(params).dtype == torch.uint8


@pytest.mark.parametrize("name", HEADS)
def test_bad_shapes_and_dtypes_raise_informative_errors(name):
    head = make_head(name, 3)
    p = head.param_channels()
    x = pixels((2, 3, 4, 4))
    method = head.loss  # defined by every head
    with pytest.raises(ValueError, match=rf"\(B, {p}, H, W\).*\(2, {p + 1}, 4, 4\)"):
        method(torch.zeros(2, p + 1, 4, 4), x)
    with pytest.raises(ValueError, match=rf"\(B, {p}, H, W\)"):
        head.mode(torch.zeros(2, p, 4))
    with pytest.raises(ValueError, match=r"uint8 of shape \(2, 3, 4, 4\).*torch.float32"):
        method(torch.zeros(2, p, 4, 4), x.float())
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 3, 4, 5\)"):
        method(torch.zeros(2, p, 4, 4), pixels((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 1, 4, 4\)"):
        method(torch.zeros(2, p, 4, 4), pixels((2, 1, 4, 4)))


# -- mean: the reconstruction used for MSE/PSNR ---------------------------------------------


def test_categorical_mean_is_the_expected_level():
    head = make_head("categorical", 1)
    logits = torch.full((1, 256, 1, 2), -1e4)
    logits[0, 10, 0, 0] = 0.0  # all mass on level 10
    logits[0, 100, 0, 1] = 0.0  # half on 100, half on 201 -> 150.5 -> 150 (round half to even)
    logits[0, 201, 0, 1] = 0.0
    assert head.mean(logits).view(-1).tolist() == [10, 150]
    assert head.mean(torch.zeros(1, 256, 1, 1)).item() == 128  # uniform: 127.5 -> 128


@pytest.mark.parametrize("log_scale", [-5.0, -3.0, -1.5, -0.5])
def test_dmol_mean_matches_the_brute_force_expectation_for_greyscale(log_scale):
    torch.manual_seed(3)
    head = make_head("dmol", 1, mixtures=3)
    p = torch.randn(2, 9, 2, 2) * 0.5
    p[:, 3:6] = torch.randn(2, 3, 2, 2) * 0.8  # means anywhere, also near and beyond the edges
    p[:, 6:9] = log_scale  # from a few levels wide to very broad
    levels = torch.arange(256, dtype=torch.uint8)
    probs = torch.stack([head.log_prob(p, v.expand(2, 1, 2, 2).contiguous()).exp() for v in levels])
    expected = (probs * torch.arange(256.0).view(-1, 1, 1, 1)).sum(0)  # (B, H, W)
    assert (head.mean(p)[:, 0].float() - expected).abs().max() <= 0.5 + 1e-3  # the rounded mean


def test_dmol_mean_of_two_sharp_components_is_their_midpoint():
    head = make_head("dmol", 1, mixtures=2)
    p = torch.zeros(1, 6, 1, 1)
    p[0, 2], p[0, 3] = -0.5, 0.5  # means (normalised); equal weights (logits 0)
    p[0, 4:6] = -7.0  # sharp
    assert head.mean(p).item() == 128  # levels 63.75 and 191.25 -> 127.5 -> 128
    assert head.mode(p).item() in (64, 191)


# -- per-channel conditionals (the codec's probabilities) and the exact conditional mean ------


def rgb_joint(logits, means, log_scales, coeffs):
    """p(r, g, b) of one RGB pixel over all 256^3 values, plainly in float64: (256, 256, 256).

    logits (n,), means / log-scales / coeffs (3, n): the PixelCNN++ mixture, each component's
    joint factored as p_k(r) p_k(g | r) p_k(b | r, g) with CDF differences over the bins.
    """
    logits, means, log_scales, coeffs = (t.double() for t in (logits, means, log_scales, coeffs))
    v = torch.arange(256, dtype=torch.float64)
    xn = v / 127.5 - 1
    up = torch.where(v == 255, torch.tensor(math.inf, dtype=torch.float64), xn + 1 / 255)
    lo = torch.where(v == 0, torch.tensor(-math.inf, dtype=torch.float64), xn - 1 / 255)
    weights, t, s = logits.softmax(0), torch.tanh(coeffs), log_scales.clamp(min=-7).exp()
    joint = torch.zeros(256, 256, 256, dtype=torch.float64)
    for k in range(len(logits)):
        def mass(mean, c):  # mass of every value under channel c's logistic with this mean
            return torch.sigmoid((up - mean) / s[c, k]) - torch.sigmoid((lo - mean) / s[c, k])

        p_r = mass(means[0, k], 0)  # (256,) over r
        p_g = mass((means[1, k] + t[0, k] * xn)[:, None], 1)  # (256 r, 256 g)
        mean_b = means[2, k] + t[1, k] * xn[:, None, None] + t[2, k] * xn[None, :, None]
        p_b = mass(mean_b, 2)  # (256 r, 256 g, 256 b)
        joint += weights[k] * p_r[:, None, None] * p_g[:, :, None] * p_b
    return joint


def marginal_means(joint):
    """(E[R], E[G], E[B]) of the joint: the MSE-optimal point estimate of each sub-pixel."""
    v = torch.arange(256, dtype=torch.float64)
    return [(joint.sum(dims) * v).sum().item() for dims in ((1, 2), (0, 2), (0, 1))]


def clipped_rgb_mixture():
    """Two components; red broad near the top (the edge bin holds a lot of mass), green and blue
    strongly coupled: here the expectation of the coupling is far from the coupling at r."""
    logits = torch.tensor([0.0, 0.0])
    means = torch.tensor([[0.9, 0.3], [-0.2, 0.4], [-0.5, 0.1]])
    log_scales = torch.tensor([[-1.0, -3.0], [-3.0, -3.0], [-4.0, -4.0]])
    coeffs = torch.tensor([[3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]])  # pairs (g,r), (b,r), (b,g)
    return logits, means, log_scales, coeffs


def test_rgb_joint_brute_force_is_the_heads_likelihood():
    mix = clipped_rgb_mixture()
    joint = rgb_joint(*mix)
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-9)
    head = make_head("dmol", 3, mixtures=2)
    params = pack(*(t.unsqueeze(0) for t in mix))
    # the 100 most probable triples and 100 drawn from the joint
    drawn = torch.multinomial(joint.flatten().float(), 100, generator=torch.Generator().manual_seed(30))
    flat = torch.cat([joint.flatten().topk(100).indices, drawn])
    x = torch.stack([flat // 65536, flat // 256 % 256, flat % 256], 1).to(torch.uint8)
    log_p = head.log_prob(params.expand(200, -1, -1, -1), x[:, :, None, None]).flatten()
    assert torch.allclose(log_p.double(), joint.flatten()[flat].log(), atol=1e-4)


def test_dmol_rgb_mean_is_the_joints_marginal_mean_where_nothing_clips():
    # coupled channels, means well inside the range, scales a few levels wide: the mean the
    # docstring calls exact is the brute-force E[x_c] of the 256^3 joint, to rounding
    for seed in range(3):
        logits, means, log_scales, coeffs = random_mixture(1, 3, 3, seed=40 + seed, log_scale=(-4.0, -3.0))
        means = means.clamp(-0.3, 0.3)
        coeffs = coeffs.clamp(-0.5, 0.5)  # tanh(c) |x| <= 0.47: the coupled means stay inside
        expected = marginal_means(rgb_joint(logits[0], means[0], log_scales[0], coeffs[0]))
        got = make_head("dmol", 3, mixtures=3).mean(pack(logits, means, log_scales, coeffs)).flatten()
        assert (got.double() - torch.tensor(expected)).abs().max() <= 0.5 + 0.05


def test_dmol_rgb_mean_where_channels_clip_is_the_documented_approximation():
    # a broad, strongly coupled mixture whose blue clips at 0: the clipped expectation is taken at
    # the expected earlier channels (the docstring's Jensen gap), 19 levels off the joint's E[B]
    g = torch.Generator().manual_seed(12)
    mix = (torch.randn(2, generator=g), torch.randn(3, 2, generator=g) * 0.9,
           torch.empty(3, 2).uniform_(-4, -0.5, generator=g), torch.randn(3, 2, generator=g) * 2)
    expected = torch.tensor(marginal_means(rgb_joint(*mix)))
    got = make_head("dmol", 3, mixtures=2).mean(pack(*(t.unsqueeze(0) for t in mix))).flatten().double()
    gap = (got - expected).abs()
    assert gap[0] <= 0.5 + 0.05  # the first channel is exact
    assert 10 < gap[2] <= 20  # the documented bound, and a case that shows it


@pytest.mark.parametrize("name,channels", [("dmol", 3), ("dmol", 1), ("dmol", 2), ("categorical", 3)])
def test_channel_probs_factor_the_likelihood_by_the_chain_rule(name, channels):
    head = make_head(name, channels, mixtures=4)
    params = torch.randn(3, head.param_channels(), 4, 5, generator=torch.Generator().manual_seed(32)) * 2
    x = head.sample(params, torch.Generator().manual_seed(33))  # values the coder will meet
    log_p = torch.zeros(3, 4, 5, dtype=torch.float64)
    for c in range(channels):
        probs = head.channel_probs(params, x, c)  # (B, 256, H, W)
        assert probs.shape == (3, 256, 4, 5) and probs.dtype == torch.float32
        assert (probs >= 0).all()
        assert torch.allclose(probs.double().sum(1), torch.ones(3, 4, 5, dtype=torch.float64), atol=1e-5)
        log_p += probs.gather(1, x[:, c : c + 1].long()).squeeze(1).double().log()
        # only the channels before c are read: the later ones may hold anything
        scrambled = x.clone()
        scrambled[:, c:] = 255 - scrambled[:, c:]
        assert torch.equal(head.channel_probs(params, scrambled[:, : c + 1], c), probs)
        assert torch.equal(head.channel_probs(params, x[:, :c], c), probs)
    # CDF differences in fp32: masses exact to ~1e-7 absolute
    assert torch.allclose(log_p, head.log_prob(params, x).double(), rtol=1e-4, atol=1e-4)


def test_dmol_channel_probs_of_a_sharp_component_put_the_mass_on_its_level():
    head = make_head("dmol", 1, mixtures=1)
    p = torch.tensor([0.0, 200 / 127.5 - 1, -7.0]).view(1, 3, 1, 1)
    probs = head.channel_probs(p, torch.zeros(1, 0, 1, 1, dtype=torch.uint8), 0).flatten()
    inside = 2 * torch.sigmoid(torch.tensor(math.exp(7.0) / 255, dtype=torch.float64)) - 1  # 0.973
    assert probs.argmax().item() == 200
    assert probs[200].item() == pytest.approx(inside.item(), abs=1e-6)
    assert probs[199].item() == pytest.approx(probs[201].item(), abs=1e-6) and probs[198] < 1e-5


def test_channel_probs_check_their_arguments():
    head = make_head("dmol", 3)
    params = torch.zeros(1, 100, 2, 2)
    with pytest.raises(ValueError, match=r"channel must be in \[0, 3\)"):
        head.channel_probs(params, pixels((1, 3, 2, 2)), 3)
    with pytest.raises(ValueError, match="holding the channels before 2"):
        head.channel_probs(params, pixels((1, 1, 2, 2)), 2)
    with pytest.raises(ValueError, match="without a likelihood"):
        make_head("mse", 3).channel_probs(torch.zeros(1, 3, 2, 2), pixels((1, 3, 2, 2)), 0)


@pytest.mark.parametrize("name", ["categorical", "dmol", "mse"])
def test_expected_is_the_unrounded_mean_and_differentiable(name):
    from depthq.models.heads import make_head

    torch.manual_seed(0)
    head = make_head(name, 3, mixtures=3)
    params = torch.randn(2, head.param_channels(), 4, 4, requires_grad=True)
    expected = head.expected(params)
    assert expected.shape == (2, 3, 4, 4) and expected.dtype == torch.float32
    assert expected.min() >= -1 and expected.max() <= 1 or name == "mse"
    rounded = ((expected.detach() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(head.mean(params.detach()), rounded)
    expected.square().sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
