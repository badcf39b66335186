"""Likelihood heads: the decoder's output map -> p(x|z) over integer pixels 0..255 (spec section 4).

A head has no parameters; it only interprets the decoder's last (B, P, H, W) map:

- ``categorical``: a 256-way softmax per sub-pixel (P = 256*C);
- ``dmol``: a discretized mixture of logistics with the autoregressive mean coupling across
  channels (Salimans et al., "PixelCNN++", ICLR 2017; Child, "VDVAE", ICLR 2021);
  P = n*(1 + 2C + C(C-1)/2), i.e. 100 for RGB with 10 mixtures;
- ``mse``: regression of normalised pixels (P = C), a distortion with no likelihood.

``nll`` is -log p(x|z) in nats per image, so bits/dim = nll / (C*H*W * ln 2). Everything is
computed in fp32 with autocast off, whatever the dtype of the decoder's output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("categorical", "dmol", "mse")
PIXEL_VALUES = 256  # the values a sub-pixel takes: 0..255
LOG_SCALE_MIN = -7.0  # PixelCNN++ clamp: scale >= e^-7, about a seventh of a bin
_TINY_WIDTH = 1e-6  # bin widths (in scales) below which log(1 - e^-d) is taken as log d


def normalise(x: Tensor) -> Tensor:
    """Integer pixels 0..255 -> fp32 in [-1, 1]: ``x / 127.5 - 1`` (also the model's input scaling).

    Floats are refused, so pixels that are already normalised are never scaled twice.
    """
    if x.is_floating_point():
        raise ValueError(f"normalise expects integer pixels 0..255 (uint8), got dtype {x.dtype}")
    return x.float() / 127.5 - 1.0


def _to_pixels(v: Tensor) -> Tensor:
    """Normalised values -> the nearest of the 256 pixel values, uint8 (values outside [-1, 1] clamp)."""
    return torch.round((v.clamp(-1.0, 1.0) + 1.0) * 127.5).to(torch.uint8)


def _at_least_one(what: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return value


@contextmanager
def _fp32(params: Tensor) -> Iterator[Tensor]:
    """``params`` as fp32 with autocast off, so nothing inside is run in half precision."""
    with torch.autocast(device_type=params.device.type, enabled=False):
        yield params.float()


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform noise in the open interval (0, 1), so that log u and log(1-u) are finite."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32)
    eps = torch.finfo(torch.float32).eps
    return u.clamp(eps, 1.0 - eps)


def _gumbel_argmax(logits: Tensor, dim: int, generator: torch.Generator | None) -> Tensor:
    """A categorical sample along ``dim`` by the Gumbel-max trick (int64, ``dim`` removed)."""
    u = _uniform(tuple(logits.shape), logits, generator)
    return (logits - torch.log(-torch.log(u))).argmax(dim)


class LikelihoodHead(nn.Module):
    """Turns the decoder's output map into p(x|z) over integer pixels 0..255. No parameters.

    Subclasses implement ``param_channels``, ``_log_prob``, ``_mode`` and ``_sample`` on fp32
    params whose shapes were already checked. Shapes: params (B, P, H, W), pixels x uint8
    (B, C, H, W).
    """

    name: str = ""
    has_likelihood: bool = True

    def __init__(self, image_channels: int) -> None:
        super().__init__()
        self.image_channels = _at_least_one("image_channels", image_channels)

    def param_channels(self, image_channels: int | None = None) -> int:
        """Channels the decoder must output for ``image_channels`` (default: this head's C)."""
        raise NotImplementedError

    def _channels(self, image_channels: int | None) -> int:
        if image_channels is None:
            return self.image_channels
        return _at_least_one("image_channels", image_channels)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) of each pixel (its C channels jointly), in nats: -> (B, H, W) fp32."""
        self._check(params, x)
        with _fp32(params) as p:
            return self._log_prob(p, x)

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) in nats per image (summed over C*H*W sub-pixels): -> (B,) fp32."""
        return -self.log_prob(params, x).sum((1, 2))

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        """Scalar training objective: the mean nll in nats per dim."""
        return self.nll(params, x).mean() / x[0].numel()

    @torch.no_grad()
    def mode(self, params: Tensor) -> Tensor:
        """The most likely image (approximately, for dmol): (B, P, H, W) -> uint8 (B, C, H, W)."""
        self._check(params)
        with _fp32(params) as p:
            return self._mode(p)

    @torch.no_grad()
    def mean(self, params: Tensor) -> Tensor:
        """The expected image, rounded: the reconstruction for pictures and MSE/PSNR.

        The mean minimises the expected squared error, so it is the fair point estimate for
        MSE/PSNR: ``expected`` rounded to pixels. For dmol it is the closed-form marginal mean of
        each channel (see ``DMoLHead._expected``). (B, P, H, W) -> uint8 (B, C, H, W).
        """
        self._check(params)
        with _fp32(params) as p:
            return self._mean(p)

    def _mean(self, p: Tensor) -> Tensor:
        return _to_pixels(self._expected(p))

    def expected(self, params: Tensor) -> Tensor:
        """E[normalise(x) | z] before rounding, differentiable: (B, P, H, W) -> fp32 (B, C, H, W)
        in [-1, 1] (the mse head's prediction as it is, not clamped). ``mean`` rounds it to pixels;
        ``model.mse_weight`` trains it as a reconstruction (an auxiliary squared error next to the likelihood)."""
        self._check(params)
        with _fp32(params) as p:
            return self._expected(p)

    def _expected(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def channel_probs(self, params: Tensor, x: Tensor, channel: int) -> Tensor:
        """p(x_c = v | z, x_<c) for the 256 values v of channel ``c = channel`` of every pixel.

        The factor of the chain rule p(x|z) = prod_c p(x_c | z, x_<c) in the head's channel order
        (for dmol the coupling's: R, then G given R, then B given R and G); the entropy coder of
        ``depthq.codec`` codes every sub-pixel with it. Only channels ``< channel`` of ``x`` are
        read, so a decoder can pass the channels it has decided so far.

        Args:
            params: (B, P, H, W) float.
            x: uint8 (B, C', H, W) with C' >= ``channel``.
            channel: 0 <= channel < C.

        Returns:
            (B, 256, H, W) fp32 probabilities, summing to 1 over dim 1. Memory: B*256*H*W floats
            (times the mixtures for dmol), so callers chunk large batches.
        """
        if not 0 <= channel < self.image_channels:
            raise ValueError(f"channel must be in [0, {self.image_channels}), got {channel}")
        self._check(params)
        b, _, h, w = params.shape
        if (
            x.dtype != torch.uint8
            or x.dim() != 4
            or x.shape[0] != b
            or x.shape[1] < channel
            or tuple(x.shape[2:]) != (h, w)
        ):
            raise ValueError(
                f"channel_probs expects pixels x as uint8 (B={b}, >= {channel}, {h}, {w}) "
                f"holding the channels before {channel}, got {x.dtype} of shape {tuple(x.shape)}"
            )
        with _fp32(params) as p:
            return self._channel_probs(p, x[:, :channel], channel)

    def _channel_probs(self, p: Tensor, known: Tensor, channel: int) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw from p(x|z): (B, P, H, W) -> uint8 (B, C, H, W); generator on params' device."""
        self._check(params)
        with _fp32(params) as p:
            return self._sample(p, generator)

    def _log_prob(self, p: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _mode(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _check(self, params: Tensor, x: Tensor | None = None) -> None:
        """ValueError unless params is a float (B, P, H, W) map and x uint8 (B, C, H, W)."""
        expected = self.param_channels()
        if params.dim() != 4 or not params.is_floating_point() or params.shape[1] != expected:
            raise ValueError(
                f"the {self.name} head expects float params of shape (B, {expected}, H, W) for "
                f"{self.image_channels} image channel(s), got {params.dtype} of shape "
                f"{tuple(params.shape)}"
            )
        if x is None:
            return
        b, _, h, w = params.shape
        want = (b, self.image_channels, h, w)
        if x.dtype != torch.uint8 or tuple(x.shape) != want:
            raise ValueError(
                f"the {self.name} head expects pixels x as uint8 of shape {want} (to match params "
                f"{tuple(params.shape)}), got {x.dtype} of shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"image_channels={self.image_channels}"


class CategoricalHead(LikelihoodHead):
    """A 256-way softmax per sub-pixel.

    Layout: params (B, 256*C, H, W) viewed as (B, C, 256, H, W); channel c's logits are
    ``params[:, c*256:(c+1)*256]``. Uniform (all-zero) logits give exactly 8 bits/dim.
    """

    name = "categorical"

    def param_channels(self, image_channels: int | None = None) -> int:
        return PIXEL_VALUES * self._channels(image_channels)

    def _logits(self, p: Tensor) -> Tensor:
        return p.unflatten(1, (self.image_channels, PIXEL_VALUES))  # (B, C, 256, H, W)

    def _log_prob(self, p: Tensor, x: Tensor) -> Tensor:
        logits = self._logits(p).transpose(1, 2)  # (B, 256, C, H, W): classes on dim 1
        ce = F.cross_entropy(logits, x.long(), reduction="none")  # (B, C, H, W)
        return -ce.sum(1)

    def _mode(self, p: Tensor) -> Tensor:
        return self._logits(p).argmax(2).to(torch.uint8)

    def _expected(self, p: Tensor) -> Tensor:
        probs = self._logits(p).softmax(2)  # (B, C, 256, H, W)
        values = torch.arange(PIXEL_VALUES, dtype=probs.dtype, device=probs.device).view(1, 1, -1, 1, 1)
        return (probs * values).sum(2) / 127.5 - 1.0

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        return _gumbel_argmax(self._logits(p), 2, generator).to(torch.uint8)

    def _channel_probs(self, p: Tensor, known: Tensor, channel: int) -> Tensor:
        return self._logits(p)[:, channel].softmax(1)  # channels are independent given z


class MixtureParams(NamedTuple):
    """A dmol head's params unpacked (C image channels, n mixtures)."""

    logits: Tensor  # (B, n, H, W) unnormalised mixture weights
    means: Tensor  # (B, C, n, H, W) means before the coupling
    log_scales: Tensor  # (B, C, n, H, W) clamped at LOG_SCALE_MIN
    coupling: Tensor  # (B, C, C, n, H, W) tanh(coeffs): [:, j, i] weights x_i in mean_j; i < j


class DMoLHead(LikelihoodHead):
    """Discretized mixture of logistics with the autoregressive coupling across channels.

    Per pixel and component k, channel j is logistic with scale s_jk and mean
    ``mu_jk + sum_{i<j} tanh(c_jik) * x_i`` (for RGB: g on r; b on r and g, as in PixelCNN++).
    Bin k of a sub-pixel covers [x_k - 1/255, x_k + 1/255] with x_k = k/127.5 - 1; value 0 takes
    all the mass below, value 255 all the mass above, so the 256 probabilities sum to 1.

    Channel layout of params (B, n*(1 + 2C + Q), H, W), Q = C(C-1)/2, in this order:
      [0, n)                 mixture logits, component k at channel k
      [n, n + C*n)           means:      channel c, component k at n + c*n + k
      [n + C*n, n + 2C*n)    log-scales: channel c, component k at n + C*n + c*n + k
      [n + 2C*n, end)        coupling coefficients: pair q, component k at n + 2C*n + q*n + k,
                             pairs (j, i), i < j, in row-major order: (1,0), (2,0), (2,1), ...
    E.g. 3 channels, 10 mixtures: params (B, 100, H, W) = 10 + 30 + 30 + 30.
    """

    name = "dmol"

    def __init__(self, image_channels: int, mixtures: int = 10) -> None:
        super().__init__(image_channels)
        self.mixtures = _at_least_one("mixtures", mixtures)

    def param_channels(self, image_channels: int | None = None) -> int:
        c = self._channels(image_channels)
        return self.mixtures * (1 + 2 * c + c * (c - 1) // 2)

    def split(self, p: Tensor) -> MixtureParams:
        """Unpack (B, P, H, W) params by the layout in the class docstring."""
        c, n = self.image_channels, self.mixtures
        q = c * (c - 1) // 2
        logits, means, log_scales, coeffs = p.split([n, c * n, c * n, q * n], dim=1)
        b, _, h, w = p.shape
        coupling = p.new_zeros(b, c, c, n, h, w)
        rows, cols = torch.tril_indices(c, c, offset=-1, device=p.device)  # pairs (j, i), i < j
        coupling[:, rows, cols] = torch.tanh(coeffs.unflatten(1, (q, n)))  # (B, Q, n, H, W)
        return MixtureParams(
            logits,
            means.unflatten(1, (c, n)),
            log_scales.unflatten(1, (c, n)).clamp(min=LOG_SCALE_MIN),
            coupling,
        )

    def _component_log_probs(self, mix: MixtureParams, x: Tensor) -> Tensor:
        """log p_k(x_c | x_<c) of each channel c < C' under each component k: (B, C', n, H, W).

        x: uint8 (B, C', H, W), the first C' <= C channels. Every channel's mean is coupled to
        the true values of the channels before it.
        """
        c = x.shape[1]
        coupled = torch.einsum("bjinhw,bihw->bjnhw", mix.coupling[:, :c, :c], normalise(x))
        mean = mix.means[:, :c] + coupled  # (B, C', n, H, W)
        log_scales = mix.log_scales[:, :c]
        level = x.long().unsqueeze(2)  # (B, C', 1, H, W)
        # bin edges from the integer level, so bin k's upper edge is bit-identical to bin
        # k+1's lower edge and the 256 masses telescope to 1
        upper = (2 * level - 254).float() / 255.0
        lower = (2 * level - 256).float() / 255.0
        inv_s = torch.exp(-log_scales)
        return _log_bin_mass(inv_s * (upper - mean), inv_s * (lower - mean), log_scales, level)

    def _log_prob(self, p: Tensor, x: Tensor) -> Tensor:
        mix = self.split(p)
        # joint over channels within a component, then the mixture
        log_joint = F.log_softmax(mix.logits, dim=1) + self._component_log_probs(mix, x).sum(1)
        return torch.logsumexp(log_joint, dim=1)  # (B, H, W)

    def _conditional(self, mix: MixtureParams, known: Tensor, channel: int) -> tuple[Tensor, Tensor, Tensor]:
        """Channel ``channel``'s mixture given the values ``known`` (B, channel, H, W) before it.

        Returns the posterior component weights (B, n, H, W),
        w_k = pi_k prod_{i<c} p_k(x_i | x_<i) / sum_j pi_j prod_{i<c} p_j(x_i | x_<i),
        and each component's coupled mean and inverse scale (B, n, H, W).
        """
        log_w = F.log_softmax(mix.logits, dim=1)
        mean = mix.means[:, channel]
        if channel > 0:
            log_w = F.log_softmax(log_w + self._component_log_probs(mix, known).sum(1), dim=1)
            mean = mean + torch.einsum("binhw,bihw->bnhw", mix.coupling[:, channel, :channel], normalise(known))
        return log_w.exp(), mean, torch.exp(-mix.log_scales[:, channel])

    def _channel_probs(self, p: Tensor, known: Tensor, channel: int) -> Tensor:
        """The mixture's CDF at the 255 interior bin edges, differenced: bin v's mass is
        F(upper edge) - F(lower edge), with F = 0 below value 0 and 1 above value 255. In fp32
        the masses are exact to ~1e-7 absolute (the CDF is summed before differencing), finer
        than the codec's resolution of 2^-24 per count."""
        weights, mean, inv_s = self._conditional(self.split(p), known, channel)
        w = weights.permute(0, 2, 3, 1).unsqueeze(-1)  # (B, H, W, n, 1)
        cdf = (_edge_cdfs(mean, inv_s) * w).sum(-2)  # (B, H, W, 255)
        probs = torch.diff(
            cdf, dim=-1, prepend=torch.zeros_like(cdf[..., :1]), append=torch.ones_like(cdf[..., :1])
        ).clamp_(min=0.0)  # (B, H, W, 256)
        return probs.permute(0, 3, 1, 2)

    def _pick(self, mix: MixtureParams, component: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Means, log-scales (B, C, H, W), coupling (B, C, C, H, W) of one component per pixel."""
        b, h, w = component.shape

        def take(t: Tensor) -> Tensor:  # (B, ..., n, H, W) -> (B, ..., H, W)
            index = component.view(b, *[1] * (t.dim() - 3), h, w)  # (B, 1, ..., 1, H, W)
            return t.gather(-3, index.expand(*t.shape[:-3], 1, h, w)).squeeze(-3)

        return take(mix.means), take(mix.log_scales), take(mix.coupling)

    def _decode(self, means: Tensor, coupling: Tensor, offsets: Tensor | None) -> Tensor:
        """Channel by channel: coupled mean (+ offset), clamp, round to a level.

        (B, C, H, W), (B, C, C, H, W) -> uint8 (B, C, H, W). Channel j's mean uses the values
        already decided for channels < j.
        """
        values = torch.zeros_like(means)  # normalised values decided so far; 0 for channels >= j
        for j in range(self.image_channels):
            v = means[:, j] + (coupling[:, j] * values).sum(1)  # (B, H, W)
            if offsets is not None:
                v = v + offsets[:, j]
            values[:, j] = _to_pixels(v).float() / 127.5 - 1.0
        return _to_pixels(values)

    def _mode(self, p: Tensor) -> Tensor:
        """The rounded mean of each pixel's most probable component: a fast approximation of the
        mode (the true mode of a mixture has no closed form)."""
        mix = self.split(p)
        means, _, coupling = self._pick(mix, mix.logits.argmax(1))
        return self._decode(means, coupling, None)

    def _expected(self, p: Tensor) -> Tensor:
        """E[x_c | z] of every sub-pixel (the marginal mean, which minimises the expected squared
        error), normalised to [-1, 1]; ``mean`` rounds it. In closed form, about as fast as the
        likelihood, and differentiable.

        Per component k, channel c is logistic(mu_ck + sum_{i<c} t_cik x_i, s_ck), clipped to
        [-1, 1] by the edge bins, and E[clip(X)] = -1 + s (softplus((m+1)/s) - softplus((m-1)/s)).
        The coupled mean mu_ck + sum_i t_cik x_i is linear in the earlier channels, so its
        expectation under component k is the coupling applied to E_k[x_i]. That is exact when
        the later channel is not clipped; where it is clipped at 0 or 255 (saturated pixels),
        E_k[clip(.)] of the coupled mean is taken at the expected earlier channels (Jensen's
        gap): an approximation, up to 19 levels off the joint's E[x_c] on a contrived saturated pixel
        (tests/models/test_heads.py), exact to rounding where no clipping occurs. Greyscale is exact. The bins'
        discretisation (values rounded to 0..255) is ignored, which moves the mean by far less
        than a level. ``channel_probs`` gives the exact per-channel distributions.
        """
        mix = self.split(p)
        weights = mix.logits.softmax(1)  # (B, n, H, W)
        scales = mix.log_scales.exp()  # (B, C, n, H, W)
        values: list[Tensor] = []  # per channel (B, n, H, W): E_k[clip(x_c)] per component (a list: autograd-safe)
        for j in range(self.image_channels):
            m = mix.means[:, j]
            for i, earlier in enumerate(values):
                m = m + mix.coupling[:, j, i] * earlier
            s = scales[:, j]
            values.append(-1.0 + s * (F.softplus((m + 1.0) / s) - F.softplus((m - 1.0) / s)))
        return (weights.unsqueeze(1) * torch.stack(values, 1)).sum(2)  # (B, C, H, W)

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        mix = self.split(p)
        means, log_scales, coupling = self._pick(mix, _gumbel_argmax(mix.logits, 1, generator))
        u = _uniform(tuple(means.shape), means, generator)
        noise = torch.exp(log_scales) * (torch.log(u) - torch.log1p(-u))  # logistic(0, s)
        return self._decode(means, coupling, noise)

    def extra_repr(self) -> str:
        return f"image_channels={self.image_channels}, mixtures={self.mixtures}"


def _edge_cdfs(mean: Tensor, inv_s: Tensor) -> Tensor:
    """Each logistic component's CDF at the 255 interior bin edges: (B, n, H, W) -> (B, H, W, n, 255).

    The upper edge of value j is e_j = (2j - 254) / 255 (j = 0..254), computed from integers as
    in ``_component_log_probs``; entry j is F_k(e_j) = sigmoid((e_j - mean_k) * inv_s_k). Edges
    on the last axis keep the sums over them contiguous.
    """
    j = torch.arange(PIXEL_VALUES - 1, device=mean.device)
    edges = (2 * j - 254).float() / 255.0
    m = mean.permute(0, 2, 3, 1).contiguous()  # (B, H, W, n)
    s = inv_s.permute(0, 2, 3, 1).contiguous()
    return torch.addcmul((-m * s).unsqueeze(-1), s.unsqueeze(-1), edges).sigmoid_()  # (e - m) * s


def _log_bin_mass(a: Tensor, b: Tensor, log_scales: Tensor, level: Tensor) -> Tensor:
    """log(sigmoid(a) - sigmoid(b)) per bin, exactly and stably; the edge bins are open.

    a, b: the bin's upper and lower edge in units of the scale. With a > b,
    sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - e^-(a-b)), so the log is
    logsigmoid(a) + logsigmoid(-b) + log(-expm1(-(a-b))): no cancellation anywhere, and no
    "cdf_delta < 1e-5" pdf fallback as in PixelCNN++. a-b is taken from the rounded a and b, so
    neighbouring bins telescope exactly; below 1e-6 (scales over ~e^9, where a-b may underflow
    to 0) log(-expm1(-d)) = log d - d/2 + ... is replaced by log d = log(2/255) - log_scale.
    Value 0 gets logsigmoid(a) (all mass below), value 255 logsigmoid(-b) (all mass above).
    """
    d = a - b
    log_d = torch.where(
        d > _TINY_WIDTH,
        torch.log(-torch.expm1(-d.clamp(min=_TINY_WIDTH))),  # the clamp keeps grads finite
        math.log(2.0 / 255.0) - log_scales,
    )
    below_a, above_b = F.logsigmoid(a), F.logsigmoid(-b)  # log F(upper), log (1 - F(lower))
    top = torch.where(level == PIXEL_VALUES - 1, above_b, below_a + above_b + log_d)
    return torch.where(level == 0, below_a, top)


class MSEHead(LikelihoodHead):
    """Regression of normalised pixels: params (B, C, H, W) predict normalise(x). No likelihood."""

    name = "mse"
    has_likelihood = False

    def param_channels(self, image_channels: int | None = None) -> int:
        return self._channels(image_channels)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Not defined: raises ValueError (so does ``nll``)."""
        raise ValueError(
            "the mse head predicts pixels without a likelihood; it has no nll or bits/dim "
            "(use categorical or dmol for bits/dim)"
        )

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        """Mean squared error of normalised pixels (a scalar, fp32)."""
        self._check(params, x)
        with _fp32(params) as p:
            return F.mse_loss(p, normalise(x))

    def _mode(self, p: Tensor) -> Tensor:
        return _to_pixels(p)

    def _expected(self, p: Tensor) -> Tensor:
        return p

    def _channel_probs(self, p: Tensor, known: Tensor, channel: int) -> Tensor:
        self.log_prob(p, known)  # raises: no likelihood, so nothing to entropy-code with
        raise AssertionError("unreachable")

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        return _to_pixels(p)  # deterministic: no noise model


def make_head(name: str, image_channels: int, *, mixtures: int = 10) -> LikelihoodHead:
    """The head called ``name`` (one of HEADS) for images with ``image_channels`` channels."""
    _at_least_one("mixtures", mixtures)
    if name == "categorical":
        return CategoricalHead(image_channels)
    if name == "dmol":
        return DMoLHead(image_channels, mixtures)
    if name == "mse":
        return MSEHead(image_channels)
    raise ValueError(f"unknown head {name!r}; expected one of {', '.join(HEADS)}")
