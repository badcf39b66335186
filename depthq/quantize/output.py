"""What every depthq quantizer returns, and the interface they all share.

The quantizers (:class:`~depthq.quantize.quantizer.DepthwiseQuantizer`,
:class:`~depthq.quantize.fsq.FiniteScalarQuantizer`,
:class:`~depthq.quantize.lfq.LookupFreeQuantizer`,
:class:`~depthq.quantize.residual.ResidualQuantizer`) are interchangeable behind
:class:`Quantizer`: the autoencoder, the learned prior and the entropy codec only rely on it.

A position of the input (one pixel of a (B, C, H, W) map, one element of a (B, N, C) sequence,
one row of a (B, C) batch) is coded by P symbols; symbol p takes ``alphabet_sizes[p]`` values:

=====================  ===========================  ====================================
quantizer              P symbols per position       alphabet_sizes
=====================  ===========================  ====================================
DepthwiseQuantizer     M codebooks                  (K,) * M
FiniteScalarQuantizer  d dimensions (the digits)    (L_1, ..., L_d)
LookupFreeQuantizer    G groups of g bits           (2**g,) * G
ResidualQuantizer      S stages x M codebooks       the stages' sizes, stage after stage
=====================  ===========================  ====================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class QuantizerOutput:
    """What a forward pass returns.

    Attributes:
        quantized: the input's shape (M*D channels for ``coupled``); values are the codes,
            gradients pass straight through to the input (or by the rotation trick).
        indices: int64 codes, the input's shape with the channel axis replaced by P symbols,
            e.g. (B, M, H, W) for a map (see :mod:`depthq.quantize.layout`).
        loss: the quantizer's loss term: ``beta * commitment`` with EMA codebooks, plus
            ``codebook_loss`` when codebooks are learned by gradient (LFQ: its weighted entropy
            and commitment terms; FSQ: 0).
        commitment: mean ||x - sg(q)||^2 (unweighted).
        codebook_loss: mean ||sg(x) - q||^2 for gradient-learned codebooks, else 0.
        perplexity: (P,) exp(entropy) of each symbol's code frequencies in this batch.
        usage: (P,) fraction of each symbol's alphabet used at least once in this batch.
        counts: (P, max alphabet size) vectors assigned to each code in this batch, zero-padded
            past a symbol's alphabet (all ranks when training under torch.distributed).
        nonfinite: (P,) int64 vectors of this batch with a NaN or inf component (or so large
            that their distances overflow fp32), per symbol, with the same scope as ``counts``.
            Such a vector gets code 0 (so it is counted in ``counts[:, 0]``); in training a
            batch with any of them leaves the codebooks untouched. A device tensor: reading it
            is the caller's choice of when to synchronise. None only when the output was built
            by other code (e.g. a baseline) that does not count them.
        per_sample_entropy: LFQ only (else None): E[H(q(z))] in nats, the mean entropy of a
            position's soft code assignment (summed over groups); 0 in eval mode.
        batch_entropy: LFQ only: H(E[q(z)]) in nats, the entropy of the batch's mean soft
            assignment (summed over groups); 0 in eval mode.
        stage_commitment: ResidualQuantizer only: (S,) mean ||z - sg(q_1 + ... + q_s)||^2 of
            each stage s (0 for a stage left out by quantizer dropout); ``commitment`` is
            their sum.
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    commitment: Tensor
    codebook_loss: Tensor
    perplexity: Tensor
    usage: Tensor
    counts: Tensor
    nonfinite: Tensor | None = None
    per_sample_entropy: Tensor | None = None
    batch_entropy: Tensor | None = None
    stage_commitment: Tensor | None = None


@runtime_checkable
class Quantizer(Protocol):
    """The interface every depthq quantizer implements (an ``nn.Module``).

    - ``forward(x, *, mask=None) -> QuantizerOutput``. ``x``: a (B, C, H, W) map, a (B, N, C)
      sequence or a (B, C) batch of vectors, C = ``in_channels``, any floating dtype (the
      search/rounding runs in fp32 whatever the autocast; ``quantized`` comes back in x's
      dtype). ``mask``: optional bool tensor shaped like x without its channel axis ((B, H, W),
      (B, N) or (B,)); False marks padding: such positions are still quantized (their indices
      are valid and decode), but they update no state (codebooks, EMA, dead codes, k-means)
      and count in no statistic (usage, counts, perplexity, nonfinite) and no loss.
    - ``indices``: int64, x's shape with the channel axis replaced by P (see the module
      table), e.g. (B, P, H, W) for a map.
    - ``decode(indices)``: the codes for such an index tensor; in eval mode it reproduces
      ``quantized`` exactly (fp32 inputs; fp32 result).
    - ``alphabet_sizes``: the alphabet size of each of the P symbols of a position;
      ``bits_per_position`` = sum of their log2.
    - ``in_channels`` / ``out_channels``: channels of x and of ``quantized``.
    """

    in_channels: int

    @property
    def out_channels(self) -> int: ...

    @property
    def alphabet_sizes(self) -> tuple[int, ...]: ...

    @property
    def bits_per_position(self) -> float: ...

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> QuantizerOutput: ...

    def decode(self, indices: Tensor) -> Tensor: ...


def bits_per_position(alphabet_sizes: tuple[int, ...]) -> float:
    """Capacity of a position: the sum of log2 of its symbols' alphabet sizes."""
    return float(sum(math.log2(k) for k in alphabet_sizes))


def usage_statistics(counts: Tensor, alphabet_sizes: Tensor) -> tuple[Tensor, Tensor]:
    """(P, K_max) counts and (P,) int alphabet sizes -> (P,) perplexity exp(H) and (P,)
    fraction of each alphabet used.

    Zero padding past a symbol's alphabet changes neither (a zero count adds no entropy and is
    not a used code); usage divides by the symbol's own alphabet size. ``alphabet_sizes`` is a
    tensor on the counts' device (a module buffer), so nothing is copied from the host.
    """
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(-1)
    return entropy.exp(), (counts > 0).sum(-1).float() / alphabet_sizes.float()


def check_indices(indices: Tensor) -> Tensor:
    """Raise TypeError unless ``indices`` is an integer tensor; return it as int64."""
    if not torch.is_tensor(indices) or indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(
            f"indices must be an integer tensor, got {type(indices).__name__} {getattr(indices, 'dtype', '')}"
        )
    return indices.long()


def check_input(x: object) -> None:
    """Raise TypeError unless ``x`` is a floating-point tensor."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
