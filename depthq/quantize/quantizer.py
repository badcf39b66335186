"""Depthwise Quantization (DQ): one codebook per slice of a feature tensor.

Fostiropoulos & Itti, "Implicit Feature Decoupling with Depthwise Quantization", CVPR 2022.
The tensor is split along an axis into M sub-tensors and every D-dim vector of sub-tensor m is
replaced by its nearest code in codebook m, so M codebooks of K codes give K^M distinct outputs
per position for a cost of M*K code vectors (shared/spec.md, sections 1-2).

The same module covers the special cases (see the class methods):

- ``M = 1``: VQ, as in VQ-VAE (:meth:`DepthwiseQuantizer.vq`);
- a (B, C) input cut into M sub-vectors: product quantization (:meth:`DepthwiseQuantizer.product`);
- ``D = 1``: a learned scalar quantizer per channel (:meth:`DepthwiseQuantizer.scalar`);
- ``coupled=True``: the official code's "coupled" VQ baseline, M codebooks on one shared
  D-dim input (:meth:`DepthwiseQuantizer.coupled`).

Options beyond the paper (spec section 8): the rotation trick as the gradient estimator (Fifty
et al., ICLR 2025; :mod:`depthq.quantize.estimators`), cosine-similarity codes (l2-normalised
vectors and codes, as in ViT-VQGAN, Yu et al. 2022), and a position ``mask`` for padded
sequences. :meth:`DepthwiseQuantizer.assign` is the search-and-update step alone, which
:class:`~depthq.quantize.residual.ResidualQuantizer` runs stage after stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthq.quantize import codebook as cb
from depthq.quantize import distributed
from depthq.quantize.estimators import ESTIMATORS, StraightThrough, masked_mse, rotation_trick
from depthq.quantize.kmeans import kmeans
from depthq.quantize.layout import AXES, Layout, check_mask, layout_for_indices, layout_for_input
from depthq.quantize.output import QuantizerOutput, check_indices, check_input
from depthq.quantize.search import (
    SEARCH_BACKENDS,
    gather_codes,
    nearest_codes_and_scores,
    nonfinite_vectors,
)

LEARNING = ("ema", "gradient")

__all__ = ["Assignment", "DepthwiseQuantizer", "QuantizerOutput"]


@dataclass
class Assignment:
    """The search-and-update step of :meth:`DepthwiseQuantizer.assign`, before any estimator.

    Attributes:
        layout: how the input maps to the (M, N, D) codebook layout.
        indices: (M, N) int64 nearest codes (0 for non-finite vectors).
        codes: the input's shape, fp32, no gradient: the codes of every vector.
        counts: (M, K) vectors per code (unmasked only; all ranks in training).
        nonfinite: (M,) int64 unmasked non-finite vectors (all ranks in training).
        codebook_loss: mean ||sg(x) - q||^2 for gradient-learned codebooks (unmasked), else 0.
    """

    layout: Layout
    indices: Tensor
    codes: Tensor
    counts: Tensor
    nonfinite: Tensor
    codebook_loss: Tensor


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class DepthwiseQuantizer(nn.Module):
    """M codebooks of K codes of dimension D, each quantizing its own slice of the input.

    Example::

        dq = DepthwiseQuantizer(num_codebooks=5, codebook_size=32, code_dim=64)
        x = torch.randn(8, 320, 16, 16)          # (B, M*D, H, W)
        out = dq(x)
        out.quantized.shape                       # (8, 320, 16, 16), straight-through
        out.indices.shape                         # (8, 5, 16, 16), int64 in [0, 32)
        dq.eval(); out = dq(x)
        torch.equal(dq.decode(out.indices), out.quantized)   # True: decode reproduces it

    Args:
        num_codebooks: M. With ``axis="spatial"`` it must equal the number of rows.
        codebook_size: K, codes per codebook.
        code_dim: D, dimension of each code.
        axis: "channel" (depthwise, the paper's method) or "spatial" (pixelwise rows).
        in_channels: channels of the input; default M*D. Fewer than P*D channels are
            zero-padded to P = ceil(in_channels / D) pieces (the paper pads VGG-16's 512
            channels to 7 x 74 = 518). With ``axis="channel"``, P must equal M.
        beta: weight of the commitment loss (paper: 0.25).
        learning: "ema" (the paper's choice) or "gradient" (codebooks are a Parameter and the
            loss gains the codebook term ||sg(x) - q||^2).
        decay: EMA decay gamma in [0, 1] (paper 0.99). With "gradient" it still smooths the
            usage counts that decide dead codes.
        eps: Laplace smoothing of the EMA counts (1e-5).
        dead_code_threshold: codes whose smoothed EMA count falls below it are moved onto
            random vectors of the current batch (official code: 1.0); 0 disables.
        kmeans_init: initialise the codebooks by k-means on the first training batch.
        kmeans_iters: Lloyd iterations for ``kmeans_init``.
        coupled: the official "coupled" baseline: the input has D channels and every codebook
            quantizes that same vector; the output is the M quantized copies (M*D channels).
        chunk_elements: bound on M * n * K score elements per search chunk of the torch search
            (memory knob); None: 2**22 on CPU, a budget from the free memory on CUDA
            (:func:`depthq.quantize.search.default_chunk_elements`).
        search: nearest-code backend: "auto" (today the torch path everywhere), "torch", or
            "triton" (a fused CUDA kernel; needs the triton package). See
            :mod:`depthq.quantize.search`.
        estimator: the gradient through the quantizer: "straight_through" (the paper's) or
            "rotation" (the rotation trick, :func:`depthq.quantize.estimators.rotation_trick`).
            Either way ``quantized`` holds the codes exactly.
        cosine: cosine-similarity codes: vectors and codes are l2-normalised before the
            search, ``quantized`` is the normalised code, and the commitment compares the
            normalised vector with it. EMA codebooks are renormalised after every update (and
            after k-means and re-initialisation); gradient-learned ones are normalised where
            used.

    Masks: ``forward(x, mask=...)`` takes a bool mask shaped like x without its channel axis
    ((B, H, W), (B, N) or (B,)); masked (False) positions are quantized like the others, but
    leave the codebooks, EMA statistics, dead-code counts and k-means untouched and count in
    neither ``counts``, ``usage``, ``perplexity``, ``nonfinite`` nor the losses.

    Precision: codebooks and statistics stay fp32 whatever ``.half()``, ``.double()``,
    ``.bfloat16()`` or ``.to(dtype)`` asks (only the device follows), distances are computed in
    fp32 whatever the input's dtype or the surrounding autocast, and ``quantized`` comes back in
    the input's dtype.
    """

    # the codebooks' state (set in __init__): a Parameter with learning="gradient", else buffers
    embed: Tensor  # (M, K, D)
    ema_sum: Tensor  # (M, K, D), learning="ema" only
    ema_count: Tensor  # (M, K)
    initialized: Tensor  # () bool

    def __init__(
        self,
        num_codebooks: int,
        codebook_size: int,
        code_dim: int,
        axis: str = "channel",
        *,
        in_channels: int | None = None,
        beta: float = 0.25,
        learning: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 1.0,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        coupled: bool = False,
        chunk_elements: int | None = None,
        search: str = "auto",
        estimator: str = "straight_through",
        cosine: bool = False,
    ) -> None:
        super().__init__()
        self.num_codebooks = _positive_int("num_codebooks", num_codebooks)
        self.codebook_size = _positive_int("codebook_size (K)", codebook_size)
        self.code_dim = _positive_int("code_dim", code_dim)
        if axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
        if learning not in LEARNING:
            raise ValueError(f"learning must be one of {LEARNING}, got {learning!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {dead_code_threshold}")
        _positive_int("kmeans_iters", kmeans_iters)
        if chunk_elements is not None:
            _positive_int("chunk_elements", chunk_elements)
        if search not in SEARCH_BACKENDS:
            raise ValueError(f"search must be one of {SEARCH_BACKENDS}, got {search!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if not isinstance(cosine, bool):
            raise TypeError(f"cosine must be a bool, got {type(cosine).__name__} {cosine!r}")
        m, k, d = self.num_codebooks, self.codebook_size, self.code_dim
        if coupled:
            if axis != "channel":
                raise ValueError('coupled=True is a channel-axis baseline; use axis="channel"')
            if in_channels not in (None, d):
                raise ValueError(
                    f"coupled: every codebook reads the same D={d} channels, so in_channels "
                    f"must be {d}, got {in_channels}"
                )
            in_channels = d
        in_channels = m * d if in_channels is None else _positive_int("in_channels", in_channels)
        pieces = math.ceil(in_channels / d)
        if axis == "channel" and not coupled and pieces != m:
            raise ValueError(
                f'axis="channel" needs ceil(in_channels / code_dim) == num_codebooks: '
                f"{in_channels} channels in pieces of {d} give {pieces} slices, expected {m} "
                f"(in_channels between {(m - 1) * d + 1} and {m * d})"
            )
        self.axis = axis
        self.in_channels = in_channels
        self.beta = float(beta)
        self.learning = learning
        self.decay = float(decay)
        self.eps = float(eps)
        self.dead_code_threshold = float(dead_code_threshold)
        self.kmeans_iters = kmeans_iters
        self.coupled = coupled
        self.chunk_elements = chunk_elements
        self.search = search
        self.estimator = estimator
        self.cosine = cosine

        embed = torch.randn(m, k, d)
        if cosine:
            embed = F.normalize(embed, dim=-1)
        if learning == "gradient":
            self.embed = nn.Parameter(embed)
        else:
            self.register_buffer("embed", embed)
            self.register_buffer("ema_sum", embed.clone())
        self.register_buffer("ema_count", torch.ones(m, k))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        # Python mirror of `initialized`, so forward never reads a device tensor to decide.
        self._needs_init = kmeans_init

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def vq(cls, codebook_size: int, code_dim: int, **kwargs) -> DepthwiseQuantizer:
        """Plain VQ (VQ-VAE): one codebook over D-dim vectors."""
        return cls(1, codebook_size, code_dim, **kwargs)

    @classmethod
    def product(cls, dim: int, num_subvectors: int, codebook_size: int, **kwargs) -> DepthwiseQuantizer:
        """Product quantization of (B, dim) vectors cut into ``num_subvectors`` pieces of equal
        size D = ceil(dim / M); the last piece is zero-padded when M does not divide dim.

        Raises ValueError when M pieces of that size leave the last one with no real channel
        (e.g. dim 9 in 4 pieces of 3).
        """
        dim, m = _positive_int("dim", dim), _positive_int("num_subvectors", num_subvectors)
        code_dim = math.ceil(dim / m)
        if math.ceil(dim / code_dim) != m:
            raise ValueError(
                f"cannot cut dim={dim} into {m} equal sub-vectors with padding in the last one "
                f"only: pieces of {code_dim} give {math.ceil(dim / code_dim)}; choose a number of "
                f"sub-vectors M with (M - 1) * ceil({dim} / M) < {dim}"
            )
        return cls(m, codebook_size, code_dim, in_channels=dim, **kwargs)

    @classmethod
    def scalar(cls, channels: int, num_values: int, **kwargs) -> DepthwiseQuantizer:
        """A learned scalar quantizer with ``num_values`` values per channel (D = 1)."""
        return cls(channels, num_values, 1, **kwargs)

    @classmethod
    def coupled_baseline(cls, num_codebooks: int, codebook_size: int, code_dim: int, **kwargs) -> DepthwiseQuantizer:
        """The official code's coupled VQ: M codebooks on one D-dim input, outputs M*D."""
        return cls(num_codebooks, codebook_size, code_dim, coupled=True, **kwargs)

    # -- properties ------------------------------------------------------------------------

    @property
    def codebooks(self) -> Tensor:
        """(M, K, D) fp32 codes (with ``cosine``, normalised; gradient-learned ones are
        normalised here, differentiably)."""
        if self.cosine and self.learning == "gradient":
            return F.normalize(self.embed, dim=-1)
        return self.embed

    def _search_table(self) -> Tensor:
        """The codebooks without autograd, for the search and the gathered codes."""
        if self.cosine and self.learning == "gradient":
            return F.normalize(self.embed.detach(), dim=-1)
        return self.embed.detach()

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        """(K,) * P: each of the P codes of a position takes one of K values (P = M for the
        channel axis; ceil(C / D) pieces for the spatial axis)."""
        return (self.codebook_size,) * math.ceil(self.out_channels / self.code_dim)

    @property
    def out_channels(self) -> int:
        """Channels of ``quantized``: in_channels, or M*D for the coupled baseline."""
        return self.num_codebooks * self.code_dim if self.coupled else self.in_channels

    @property
    def bits_per_position(self) -> float:
        """Capacity per position: log2 K for each of the P codes that code it (P*log2 K).

        P = M for the channel axis (M log2 K); for the spatial axis P is the number of
        D-pieces per position, ceil(C / D).
        """
        pieces = math.ceil(self.out_channels / self.code_dim)
        return pieces * math.log2(self.codebook_size)

    def extra_repr(self) -> str:
        return (
            f"num_codebooks={self.num_codebooks}, codebook_size={self.codebook_size}, "
            f"code_dim={self.code_dim}, axis={self.axis!r}, in_channels={self.in_channels}, "
            f"learning={self.learning!r}, coupled={self.coupled}"
            + (f", search={self.search!r}" if self.search != "auto" else "")
            + (f", estimator={self.estimator!r}" if self.estimator != "straight_through" else "")
            + (", cosine=True" if self.cosine else "")
        )

    def _apply(self, fn, recurse=True):
        """Follow device moves but keep floating tensors fp32: ``.half()``/``.double()``/
        ``.to(dtype)`` would otherwise round the codebooks and run the EMA in low precision."""

        def device_only(t: Tensor) -> Tensor:
            moved = fn(t)
            if t.is_floating_point() and moved.dtype != t.dtype:
                return t.detach().to(moved.device)
            return moved

        return super()._apply(device_only, recurse)

    # -- forward ---------------------------------------------------------------------------

    def _tile(self, x: Tensor) -> Tensor:
        """Coupled baseline: check the D input channels and repeat them M times.

        The gradient of the repeat sums over the M copies, as in the official code where M
        quantizers read one projection.
        """
        dim = 1 if x.dim() == 4 else -1
        if x.dim() in (2, 3, 4) and x.shape[dim] != self.code_dim:
            where = "dim 1" if x.dim() == 4 else "the last dim"
            raise ValueError(
                f"coupled quantizer expects {self.code_dim} channels in {where}, "
                f"got {x.shape[dim]} (input shape {tuple(x.shape)})"
            )
        reps = [1] * x.dim()
        reps[dim] = self.num_codebooks
        return x.repeat(reps)

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize ``x``; see the class docstring for shapes and ``mask``."""
        check_input(x)
        # Distances and statistics in fp32 whatever the surrounding autocast says.
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.coupled:
                x = self._tile(x)
            step = self.assign(x, mask=mask)
            if mask is None and not self.cosine and self.estimator == "straight_through":
                quantized, commitment = StraightThrough.apply(x, step.codes)  # the paper's path
            else:
                quantized, commitment = self._estimate(x, step, mask)
            loss = step.codebook_loss + self.beta * commitment
        counts = step.counts
        probs = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)
        return QuantizerOutput(
            quantized=quantized,
            indices=step.layout.indices_from_codebooks(step.indices),
            loss=loss,
            commitment=commitment,
            codebook_loss=step.codebook_loss,
            perplexity=entropy.exp(),
            usage=(counts > 0).float().mean(-1),
            counts=counts,
            nonfinite=step.nonfinite,
        )

    def assign(self, x: Tensor, *, mask: Tensor | None = None) -> Assignment:
        """The nearest codes of ``x`` and, in training, the codebook update; no estimator.

        ``x`` is the input as ``forward`` takes it (already tiled for ``coupled``), read
        without autograd; call it with autocast off. For composite quantizers (a residual
        stage quantizes the previous stage's residual); ``forward`` is this plus the gradient
        estimator and the losses.
        """
        layout = layout_for_input(
            tuple(x.shape),
            axis=self.axis,
            channels=self.out_channels,
            code_dim=self.code_dim,
            num_codebooks=self.num_codebooks,
        )
        check_mask(mask, x.shape)
        flat = layout.to_codebooks(x.detach().float())  # (M, N, D), no autograd
        if self.cosine:
            flat = F.normalize(flat, dim=-1)
        valid = None if mask is None else layout.mask_to_codebooks(mask)  # (M, N) bool
        if self.training and self._needs_init:
            self._kmeans_init(flat, valid)
        # (M, N) indices and best scores; a vector that is not finite scores non-finite
        # (no extra pass over x to find it) and gets code 0. (No local alias of the codebooks
        # lives on while _update writes them: torch.compile refuses a mutated aliased input.)
        idx, scores = nearest_codes_and_scores(flat, self._search_table(), self.chunk_elements, search=self.search)
        finite = torch.isfinite(scores)  # (M, N)
        idx.mul_(finite)  # code 0 where not finite
        if valid is None:
            nonfinite = finite.shape[1] - finite.sum(-1)  # (M,) int64
        else:
            nonfinite = (valid & ~finite).sum(-1)  # masked vectors do not count
        codes = layout.from_codebooks(gather_codes(self._search_table(), idx))  # input shape, fp32
        counts = cb.code_counts(idx, self.codebook_size, valid)  # (M, K)
        reset = None
        if self.training:  # after the codes were read: the update is for the next batch
            reset = self._update(flat, idx, counts, nonfinite, valid)
        codebook_loss = torch.zeros((), device=x.device)
        if self.learning == "gradient" and flat.numel():
            # ||sg(x) - q||^2, with no gradient for codes just moved onto new vectors (their
            # gradient was computed at the old position)
            diff = (gather_codes(self.codebooks, idx) - flat).pow(2)  # (M, N, D)
            if reset is not None:
                diff = diff * (~reset).gather(1, idx).unsqueeze(-1)
            if valid is None:
                codebook_loss = diff.sum() / flat.numel()
            else:
                kept = valid.sum() * self.code_dim
                codebook_loss = torch.where(valid.unsqueeze(-1), diff, 0.0).sum() / kept.clamp(min=1)
        return Assignment(layout, idx, codes, counts, nonfinite, codebook_loss)

    def _estimate(self, x: Tensor, step: Assignment, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``quantized`` and the commitment for the options (mask, cosine, rotation trick)."""
        layout = step.layout
        z = x
        if self.cosine:  # the vector that is quantized is z/|z|, per D-piece, differentiably
            z = layout.from_codebooks(F.normalize(layout.to_codebooks(x.float()), dim=-1))
        where = None if mask is None else layout.broadcast_mask(mask)
        if self.estimator == "straight_through":
            quantized, commitment = StraightThrough.apply(z, step.codes, where)
        else:
            commitment = masked_mse(z, step.codes, where)
            rotated = rotation_trick(layout.to_codebooks(z.float()), layout.to_codebooks(step.codes))  # (M, N, D)
            quantized = layout.from_codebooks(rotated)
        return quantized.to(x.dtype), commitment

    # -- training-time updates -------------------------------------------------------------

    @torch.no_grad()
    def _update(
        self, x: Tensor, idx: Tensor, counts: Tensor, nonfinite: Tensor, valid: Tensor | None = None
    ) -> Tensor | None:
        """EMA step and dead-code replacement for one training batch.

        ``counts`` (M, K) and ``nonfinite`` (M,) are summed over ranks in place, so the caller's
        figures are global. ``valid`` (M, N) bool: the unmasked vectors (None: all). Returns the
        (M, K) mask of codes moved onto new vectors (None when re-initialisation is off).
        Nothing is read on the host.

        Under torch.distributed, the batch counts, the batch sums and the replacement
        candidates travel in one all-reduce, so every rank ends with identical codebooks,
        equal to one process that saw the concatenated batch.
        """
        m, k, d = self.embed.shape
        ema = self.learning == "ema"
        # A non-finite vector on any rank makes `nonfinite` non-zero on every rank after the
        # all-reduce, and the whole update is then dropped: one bad batch (a NaN from an
        # exploding step) cannot poison the codebooks. No host synchronisation is needed.
        stats = [counts, nonfinite]
        if ema:
            kept = x if valid is None else torch.where(valid.unsqueeze(-1), x, 0.0)
            stats.append(cb.code_sums(kept, idx, k))  # (M, K, D)
        replace = self.dead_code_threshold > 0
        if replace:
            # Code k's candidate is drawn by one rank (k mod world size); `available` records
            # whether that rank had vectors to draw from, so an empty share never seeds a code.
            candidates = cb.sample_vectors(x, k, valid=valid)  # (M, K, D) from this rank's batch
            owner = distributed.owner_mask(k, x.device)  # (K,) all ones in one process
            candidates *= owner.view(1, k, 1)
            if valid is None:
                available = owner * float(x.shape[1] > 0)  # (K,)
            else:
                available = owner * (valid.sum(-1, keepdim=True) > 0)  # (M, K)
            stats += [candidates, available]
        distributed.all_reduce_sum_(*stats)
        # nothing to learn from an empty global batch (or a non-finite one); per codebook, as
        # masks can leave one codebook without vectors (without masks all agree)
        ok = (nonfinite.sum() == 0) & (counts.sum(-1, keepdim=True) > 0)  # (M, 1)

        # N <- decay*N + (1-decay)*n ; S <- decay*S + (1-decay)*s  (lerp by 1 - decay)
        count = self.ema_count.lerp(counts, 1.0 - self.decay)
        embed = self.embed  # under no_grad
        if ema:
            total = self.ema_sum.lerp(stats[2], 1.0 - self.decay)
            embed = total / cb.smoothed_counts(count, self.eps).unsqueeze(-1)
            if self.cosine:
                embed = F.normalize(embed, dim=-1)
        if replace:
            if self.cosine:  # the tie-breaking noise moved the candidates off the sphere
                candidates = F.normalize(candidates, dim=-1)
            dead = cb.dead_code_mask(count, self.eps, self.dead_code_threshold)  # (M, K)
            dead &= available.view(-1, k) > 0
            embed = torch.where(dead.unsqueeze(-1), candidates, embed)
            # Reset the statistics so the EMA reproduces the new code: N = threshold, S = N*e.
            count = torch.where(dead, self.dead_code_threshold, count)
            if ema:
                total = torch.where(dead.unsqueeze(-1), candidates * count.unsqueeze(-1), total)
        self.ema_count.copy_(torch.where(ok, count, self.ema_count))
        self.embed.copy_(torch.where(ok.unsqueeze(-1), embed, self.embed))  # no_grad: no .data (torch.compile)
        if ema:
            self.ema_sum.copy_(torch.where(ok.unsqueeze(-1), total, self.ema_sum))
        return dead & ok if replace else None

    @torch.no_grad()
    def _kmeans_init(self, x: Tensor, valid: Tensor | None = None) -> None:
        """k-means (k-means++ seeding, then Lloyd) on the first usable training batch.

        Usable means: every codebook has vectors in the global batch (all ranks; unmasked ones
        when ``valid`` is given) and all of them are finite (a NaN centroid would capture every
        vector). Every rank takes the same decision from all-reduced counts and then enters
        every collective, even with an empty share, so no rank waits on another. The decision
        reads the counts on the host: one synchronisation per training step until the
        codebooks are initialised (normally exactly once); after that, ``forward`` never comes
        here.
        """
        bad_vectors = nonfinite_vectors(x)  # (M, N)
        if valid is None:
            per_codebook = x.new_full((x.shape[0],), float(x.shape[1]))  # (M,)
        else:
            bad_vectors &= valid
            per_codebook = valid.sum(-1).float()
        status = torch.cat([bad_vectors.sum().float().view(1), per_codebook])
        distributed.all_reduce_sum_(status)
        bad, *totals = status.tolist()  # the one host read
        if bad > 0 or min(totals) == 0:
            return
        centroids, counts = kmeans(x, self.codebook_size, self.kmeans_iters, self.search, valid)
        if self.cosine:  # Lloyd's means of unit vectors, put back on the sphere
            centroids = F.normalize(centroids, dim=-1)
        self.embed.copy_(centroids)
        self.ema_count.copy_(counts)
        if self.learning == "ema":
            self.ema_sum.copy_(centroids * counts.unsqueeze(-1))
        self.initialized.fill_(True)
        self._needs_init = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "initialized"
        if key in state_dict:
            self._needs_init = not bool(state_dict[key])

    # -- decoding and diagnostics ----------------------------------------------------------

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Codes for an index tensor from ``forward``: reproduces ``quantized`` (fp32)."""
        indices = check_indices(indices)
        layout = layout_for_indices(
            tuple(indices.shape),
            axis=self.axis,
            channels=self.out_channels,
            code_dim=self.code_dim,
            num_codebooks=self.num_codebooks,
        )
        idx = layout.indices_to_codebooks(indices.long())
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size}), got values in [{int(idx.min())}, {int(idx.max())}]"
            )
        return layout.from_codebooks(gather_codes(self._search_table(), idx))

    def dead_codes(self, threshold: float | None = None) -> Tensor:
        """(M,) codes per codebook whose smoothed EMA count is below ``threshold``.

        The default is the re-initialisation threshold, or 1.0 when re-initialisation is off.
        """
        if threshold is None:
            threshold = self.dead_code_threshold or 1.0
        return cb.dead_code_mask(self.ema_count, self.eps, threshold).sum(-1)
