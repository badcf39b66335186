"""Residual quantization: S stages, each quantizing what the previous ones left.

Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021 (residual VQ with
quantizer dropout); Lee et al., "Autoregressive Image Generation using Residual
Quantization" (RQ-VAE), CVPR 2022. With r_0 = z:

    q_s = Q_s(r_{s-1}),    r_s = r_{s-1} - q_s,    quantized = z + sg(q_1 + ... + q_S - z)

(spec section 8): one straight-through estimator (or rotation trick) on the sum, so the
gradient reaching z is that of the sum, not S copies of it. Each Q_s is a
:class:`~depthq.quantize.quantizer.DepthwiseQuantizer` with its own codebooks, EMA and dead-code
re-initialisation: M = 1 is residual VQ, M > 1 residual DQ (each of the M slices gets its own
residual chain; equal to M residual VQs side by side, vector-quantize-pytorch's
``GroupedResidualVQ``). The commitment is RQ-VAE's sum over stages of
||z - sg(q_1 + ... + q_s)||^2 (= ||r_{s-1} - sg(q_s)||^2 with r_{s-1} differentiable in z).

Quantizer dropout (SoundStream): in training, each batch uses only the first n stages, n drawn
in [dropout_min_stages, S]. n is a hash of (``dropout_seed``, the ``dropout_step`` buffer)
computed on the device: no host synchronisation, no collective, the same n on every DDP rank
(the ranks step in lock-step), and a resumed run continues the sequence. Dropped stages are
still searched (a static graph for torch.compile) but update nothing, add nothing, and report
index -1; :meth:`ResidualQuantizer.decode` reads -1 as "no code", so a prefix of the stages
decodes the coarse reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from depthq.quantize.estimators import ESTIMATORS, StraightThrough, masked_mse, rotation_trick
from depthq.quantize.layout import check_mask, layout_for_input, position_shape
from depthq.quantize.output import (
    QuantizerOutput,
    bits_per_position,
    check_indices,
    check_input,
    usage_statistics,
)
from depthq.quantize.quantizer import DepthwiseQuantizer

_MASK32 = 0xFFFFFFFF


def prefix_length(step: Tensor, seed: int, low: int, high: int) -> Tensor:
    """A pseudo-random integer in [low, high] from a step counter and a seed, on the device.

    A 32-bit integer hash (two xor-shift-multiply rounds) of step + seed * golden ratio, in
    int64 arithmetic that never overflows; the same inputs give the same answer on every
    device and every rank.
    """
    h = (step + (seed * 0x9E3779B9)) & _MASK32
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & _MASK32
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & _MASK32
    h = h ^ (h >> 16)
    return low + h % (high - low + 1)


class ResidualQuantizer(nn.Module):
    """S residual stages of M codebooks (residual VQ for M = 1, residual DQ for M > 1).

    Example::

        rq = ResidualQuantizer(4, codebook_size=1024, code_dim=64)   # residual VQ, 40 bits
        x = torch.randn(8, 64, 16, 16)                    # (B, C, H, W)
        out = rq(x)
        out.indices.shape                                 # (8, 4, 16, 16): S*M codes
        rq.eval(); out = rq(x)
        torch.equal(rq.decode(out.indices), out.quantized)   # True

    Args:
        num_stages: S.
        codebook_size: K, or one K per stage.
        code_dim: D.
        num_codebooks: M codebooks per stage (slices of the channel axis; 1: residual VQ).
        in_channels: channels of the input (default M*D; as DepthwiseQuantizer pads).
        axis: "channel" or "spatial", as DepthwiseQuantizer.
        beta: weight of the commitment (summed over stages) in ``loss``.
        estimator: "straight_through" or "rotation", applied once, to the sum.
        dropout: quantizer dropout in training (module docstring).
        dropout_min_stages: the fewest stages a training batch uses (1 <= it <= S).
        dropout_seed: seed of the stage-count sequence (identical on every rank by default).
        learning: every stage's DepthwiseQuantizer setting, as are ``decay``, ``eps``,
            ``dead_code_threshold``, ``kmeans_init``, ``kmeans_iters``, ``cosine``,
            ``chunk_elements`` and ``search`` (cosine: each stage quantizes the direction of
            its residual and outputs a unit code).

    Attributes:
        stages: the S DepthwiseQuantizer stages (an ``nn.ModuleList``).

    ``forward(x, *, mask=None)`` follows :class:`depthq.quantize.output.Quantizer`; per stage,
    ``counts``/``perplexity``/``usage``/``nonfinite`` rows are stage 1's M codebooks, then stage
    2's, ...; ``stage_commitment`` is (S,). A non-finite vector gets code 0 at every stage, and
    its batch updates no stage.
    """

    dropout_step: Tensor  # () int64 buffer: training batches seen, the dropout's draw counter
    _alphabet: Tensor  # (S*M,) the stages' alphabet sizes

    def __init__(
        self,
        num_stages: int,
        codebook_size: int | Sequence[int],
        code_dim: int,
        num_codebooks: int = 1,
        *,
        in_channels: int | None = None,
        axis: str = "channel",
        beta: float = 0.25,
        estimator: str = "straight_through",
        dropout: bool = False,
        dropout_min_stages: int = 1,
        dropout_seed: int = 0,
        learning: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 1.0,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        cosine: bool = False,
        chunk_elements: int | None = None,
        search: str = "auto",
    ) -> None:
        super().__init__()
        if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
            raise ValueError(f"num_stages must be an int >= 1, got {num_stages!r}")
        sizes = (codebook_size,) * num_stages if isinstance(codebook_size, int) else tuple(codebook_size)
        if len(sizes) != num_stages:
            raise ValueError(f"codebook_size: expected one int or {num_stages} (one per stage), got {len(sizes)}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if not isinstance(dropout, bool):
            raise TypeError(f"dropout must be a bool, got {type(dropout).__name__} {dropout!r}")
        if (
            isinstance(dropout_min_stages, bool)
            or not isinstance(dropout_min_stages, int)
            or not (1 <= dropout_min_stages <= num_stages)
        ):
            raise ValueError(f"dropout_min_stages must be an int in [1, {num_stages}], got {dropout_min_stages!r}")
        if isinstance(dropout_seed, bool) or not isinstance(dropout_seed, int) or dropout_seed < 0:
            raise ValueError(f"dropout_seed must be an int >= 0, got {dropout_seed!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.stages = nn.ModuleList(
            DepthwiseQuantizer(
                num_codebooks, size, code_dim, axis, in_channels=in_channels, beta=beta, learning=learning,
                decay=decay, eps=eps, dead_code_threshold=dead_code_threshold, kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters, chunk_elements=chunk_elements, search=search, cosine=cosine,
            )
            for size in sizes
        )  # fmt: skip
        first = self._stage_list[0]
        self.in_channels = first.in_channels
        self.num_codebooks, self.code_dim, self.axis = first.num_codebooks, first.code_dim, first.axis
        self.beta = float(beta)
        self.estimator = estimator
        self.dropout = dropout
        self.dropout_min_stages = dropout_min_stages
        self.dropout_seed = dropout_seed
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("_alphabet", torch.tensor(self.alphabet_sizes), persistent=False)

    @classmethod
    def vq(cls, num_stages: int, codebook_size: int | Sequence[int], dim: int, **kwargs) -> ResidualQuantizer:
        """Residual VQ of dim-dimensional vectors: one codebook per stage."""
        return cls(num_stages, codebook_size, dim, 1, **kwargs)

    @property
    def _stage_list(self) -> list[DepthwiseQuantizer]:
        """The stages with their type (iterating an ``nn.ModuleList`` yields plain Modules)."""
        return cast("list[DepthwiseQuantizer]", list(self.stages))

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def out_channels(self) -> int:
        return self._stage_list[0].out_channels

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        """The stages' alphabet sizes, stage after stage."""
        return tuple(k for stage in self._stage_list for k in stage.alphabet_sizes)

    @property
    def bits_per_position(self) -> float:
        return bits_per_position(self.alphabet_sizes)

    def extra_repr(self) -> str:
        return f"num_stages={self.num_stages}, estimator={self.estimator!r}, dropout={self.dropout}" + (
            f", dropout_min_stages={self.dropout_min_stages}" if self.dropout else ""
        )

    def _active_stages(self, device: torch.device) -> Tensor | None:
        """(S,) bool, True for the stages this training batch uses; None: all of them."""
        if not (self.training and self.dropout):
            return None
        n = prefix_length(self.dropout_step, self.dropout_seed, self.dropout_min_stages, self.num_stages)
        self.dropout_step.add_(1)
        return torch.arange(self.num_stages, device=device) < n

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize ``x`` stage after stage; see the class docstring."""
        check_input(x)
        layout = layout_for_input(tuple(x.shape), axis=self.axis, channels=self.out_channels,
                                  code_dim=self.code_dim, num_codebooks=self.num_codebooks)  # fmt: skip
        check_mask(mask, x.shape)
        channel_axis = 1 if x.dim() == 4 else -1
        with torch.autocast(device_type=x.device.type, enabled=False):
            active = self._active_stages(x.device)
            where = None if mask is None else layout.broadcast_mask(mask)
            residual = x.detach().float()  # r_0 = z, no autograd: the search's input
            total = torch.zeros_like(residual)
            steps, partial_commitments = [], []
            for s, stage in enumerate(self._stage_list):
                stage_mask = mask
                if active is not None:
                    on = active[s].expand(position_shape(x.shape))
                    stage_mask = on if mask is None else mask & on
                step = stage.assign(residual, mask=stage_mask)
                codes = step.codes if active is None else torch.where(active[s], step.codes, 0.0)
                residual = residual - codes  # r_s = r_{s-1} - q_s
                total = total + codes  # q_1 + ... + q_s
                steps.append(step)
                if s + 1 < self.num_stages:  # the last stage's comes with the estimator
                    partial_commitments.append(masked_mse(x, total, where))
            if self.estimator == "straight_through":
                quantized, last = StraightThrough.apply(x, total, where)
            else:
                last = masked_mse(x, total, where)
                rotated = rotation_trick(layout.to_codebooks(x.float()), layout.to_codebooks(total))
                quantized = layout.from_codebooks(rotated).to(x.dtype)
            stage_commitment = torch.stack([*partial_commitments, last])  # (S,)
            if active is not None:
                stage_commitment = stage_commitment * active
            commitment = stage_commitment.sum()
            codebook_loss = torch.stack([step.codebook_loss for step in steps]).sum()
            loss = codebook_loss + self.beta * commitment

        indices = []
        for s, step in enumerate(steps):
            idx = step.indices if active is None else torch.where(active[s], step.indices, -1)
            indices.append(step.layout.indices_from_codebooks(idx))
        k_max = max(stage.codebook_size for stage in self._stage_list)
        counts = torch.cat([nn.functional.pad(step.counts, (0, k_max - step.counts.shape[1])) for step in steps])
        perplexity, usage = usage_statistics(counts, self._alphabet)
        return QuantizerOutput(
            quantized=quantized,
            indices=torch.cat(indices, channel_axis),
            loss=loss,
            commitment=commitment,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            usage=usage,
            counts=counts,
            nonfinite=torch.cat([step.nonfinite for step in steps]),
            stage_commitment=stage_commitment,
        )

    # -- decoding --------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """(B, S*M, H, W) / (B, N, S*M) / (B, S*M) indices -> the sum of the stages' codes
        (fp32); reproduces ``quantized`` in eval mode. Where a stage's index at a position is
        -1 (a dropped stage), that stage adds nothing there."""
        indices = check_indices(indices)
        if indices.dim() not in (2, 3, 4):
            raise ValueError(f"expected indices of rank 2, 3 or 4, got shape {tuple(indices.shape)}")
        axis = 1 if indices.dim() == 4 else indices.dim() - 1
        per_stage = [len(stage.alphabet_sizes) for stage in self._stage_list]
        if indices.shape[axis] != sum(per_stage):
            raise ValueError(
                f"expected {sum(per_stage)} codes per position ({self.num_stages} stages x {per_stage[0]}), "
                f"got shape {tuple(indices.shape)}"
            )
        if indices.numel() and int(indices.min()) < -1:
            raise ValueError(f"indices must be -1 (no code) or a code, got {int(indices.min())}")
        total: Tensor | None = None
        for stage, idx in zip(self._stage_list, indices.split(per_stage, axis)):
            codes = stage.decode(idx.clamp(min=0))
            dropped = (idx < 0).any(axis, keepdim=True)  # (B, 1, H, W): no code at this stage
            codes = torch.where(dropped, 0.0, codes)
            total = torch.zeros_like(codes) + codes if total is None else total + codes
        assert total is not None  # num_stages >= 1 (checked in __init__)
        return total

    @property
    def codebooks(self) -> list[Tensor]:
        """Each stage's (M, K_s, D) codebooks."""
        return [stage.codebooks for stage in self._stage_list]
