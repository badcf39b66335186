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
from contextlib import contextmanager
from typing import Iterator, NamedTuple

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
        MSE/PSNR. (B, P, H, W) -> uint8 (B, C, H, W).
        """
        self._check(params)
        with _fp32(params) as p:
            return self._mean(p)

    def _mean(self, p: Tensor) -> Tensor:
        return self._mode(p)

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

    def _mean(self, p: Tensor) -> Tensor:
        probs = self._logits(p).softmax(2)  # (B, C, 256, H, W)
        values = torch.arange(PIXEL_VALUES, dtype=probs.dtype, device=probs.device).view(1, 1, -1, 1, 1)
        return (probs * values).sum(2).round().clamp(0, PIXEL_VALUES - 1).to(torch.uint8)

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        return _gumbel_argmax(self._logits(p), 2, generator).to(torch.uint8)


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

    def _log_prob(self, p: Tensor, x: Tensor) -> Tensor:
        mix = self.split(p)
        # every channel's mean is coupled to the true values of the channels before it
        coupled = torch.einsum("bjinhw,bihw->bjnhw", mix.coupling, normalise(x))
        mean = mix.means + coupled  # (B, C, n, H, W)
        level = x.long().unsqueeze(2)  # (B, C, 1, H, W)
        # bin edges from the integer level, so bin k's upper edge is bit-identical to bin
        # k+1's lower edge and the 256 masses telescope to 1
        upper = (2 * level - 254).float() / 255.0
        lower = (2 * level - 256).float() / 255.0
        inv_s = torch.exp(-mix.log_scales)
        a = inv_s * (upper - mean)  # (B, C, n, H, W)
        b = inv_s * (lower - mean)
        log_p = _log_bin_mass(a, b, mix.log_scales, level)
        # joint over channels within a component, then the mixture
        log_joint = F.log_softmax(mix.logits, dim=1) + log_p.sum(1)  # (B, n, H, W)
        return torch.logsumexp(log_joint, dim=1)  # (B, H, W)

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

    def _mean(self, p: Tensor) -> Tensor:
        """E[x] of the mixture, rounded: sum over components of weight * E[clip(X, -1, 1)].

        For a logistic X with mean m and scale s, E[clip(X, -1, 1)] =
        -1 + s * (softplus((m + 1) / s) - softplus((m - 1) / s)) (the edge bins hold the mass
        beyond +-1). Channel j's mean in a component is coupled to that component's expected
        values of the channels before it (exact for greyscale; for RGB the coupling is applied
        to expectations, a close approximation).
        """
        mix = self.split(p)
        weights = mix.logits.softmax(1)  # (B, n, H, W)
        scales = mix.log_scales.exp()  # (B, C, n, H, W)
        values = torch.zeros_like(mix.means)  # (B, C, n, H, W): E[clip(x_c)] per component
        for j in range(self.image_channels):
            m = mix.means[:, j] + (mix.coupling[:, j] * values).sum(1)  # (B, n, H, W)
            s = scales[:, j]
            values[:, j] = -1.0 + s * (F.softplus((m + 1.0) / s) - F.softplus((m - 1.0) / s))
        return _to_pixels((weights.unsqueeze(1) * values).sum(2))  # (B, C, H, W)

    def _sample(self, p: Tensor, generator: torch.Generator | None) -> Tensor:
        mix = self.split(p)
        means, log_scales, coupling = self._pick(mix, _gumbel_argmax(mix.logits, 1, generator))
        u = _uniform(tuple(means.shape), means, generator)
        noise = torch.exp(log_scales) * (torch.log(u) - torch.log1p(-u))  # logistic(0, s)
        return self._decode(means, coupling, noise)

    def extra_repr(self) -> str:
        return f"image_channels={self.image_channels}, mixtures={self.mixtures}"


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
