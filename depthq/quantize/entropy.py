"""The entropy terms of lookup-free quantization, in bounded memory.

LFQ (Yu et al., "Language Model Beats Diffusion: Tokenizer is Key to Visual Generation",
ICLR 2024) softly assigns a g-dim vector z to the 2^g sign codes c in {-1, 1}^g,

    q(c | z) = softmax_c( -||z - c||^2 / tau ) = softmax_c( 2 <z, c> / tau )

(||z||^2 and ||c||^2 = g do not depend on c), and its entropy loss is
E_z[H(q(. | z))] - gamma * H(E_z[q(. | z)]).

- The per-sample term factorises over dimensions: q(c | z) = prod_i sigmoid(c_i 4 z_i / tau),
  so H(q(. | z)) = sum_i H_Bernoulli(sigmoid(4 z_i / tau)) exactly, in O(g) per vector
  (:func:`bernoulli_entropy`), for any number of bits.
- The batch term does not factorise: E_z[q] is a (2^g,) mixture. :class:`MeanCodeProbabilities`
  sums w_n q(. | z_n) over N vectors in chunks and recomputes each chunk in backward, so memory
  is one (G, chunk, 2^g) block whatever N; for large d the bits are split into G groups of g
  and the batch entropy is summed over groups (an upper bound on the entropy over all 2^d
  codes; exact when G = 1).

Entropies are in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sign_codes(bits: int, device: torch.device | None = None) -> Tensor:
    """(2^bits, bits) fp32 table of the codes in {-1, 1}^bits; row c has +1 in column j
    exactly when bit j of c is set (c = sum_j 2^j [c_j > 0])."""
    index = torch.arange(2**bits, device=device).unsqueeze(-1)  # (K, 1)
    places = 2 ** torch.arange(bits, device=device)  # (bits,)
    return (torch.div(index, places, rounding_mode="floor") % 2).float() * 2 - 1


def bernoulli_entropy(logits: Tensor) -> Tensor:
    """Entropy of Bernoulli(sigmoid(a)), elementwise: softplus(a) - a sigmoid(a); finite, with
    a finite gradient, for any finite a."""
    return F.softplus(logits) - logits * torch.sigmoid(logits)


def categorical_entropy(probs: Tensor) -> Tensor:
    """-sum p log p over the last axis; p under fp32's smallest normal number counts as that
    number inside the log, so the gradient stays finite where a probability underflowed."""
    return -(probs * probs.clamp(min=torch.finfo(torch.float32).tiny).log()).sum(-1)


class MeanCodeProbabilities(torch.autograd.Function):
    """sum_n w_n softmax_c(scale <z_n, c>) per group, chunked over N; backward recomputes.

    ``MeanCodeProbabilities.apply(z, weights, codes, scale, rows)``:

    - z: (G, N, g) fp32, the vectors of G groups (gradient flows to it);
    - weights: (N,) fp32 per-vector weights (0 for masked vectors), no gradient;
    - codes: (K, g) fp32, e.g. :func:`sign_codes`;
    - scale: the logit scale (2 / tau for LFQ);
    - rows: vectors per chunk, so a chunk's (G, rows, K) block bounds the memory.

    Returns (G, K) weighted sums of the soft assignments (divide by sum w for the mean). Only
    z is saved for backward; with p = softmax(l) and the incoming (G, K) gradient G_,
    dL/dl[n, k] = w_n p_k (G_k - <p, G_>) and dL/dz_n = scale * dL/dl[n] @ codes.
    """

    @staticmethod
    def forward(ctx, z: Tensor, weights: Tensor, codes: Tensor, scale: float, rows: int) -> Tensor:
        groups, n, _ = z.shape
        codes_t = codes.t()  # (g, K)
        total = z.new_zeros(groups, codes.shape[0])
        for start in range(0, n, rows):
            probs = torch.softmax(torch.matmul(z[:, start : start + rows], codes_t) * scale, -1)  # (G, n, K)
            total = total + torch.matmul(weights[start : start + rows], probs)  # (n,) @ (G, n, K) -> (G, K)
        ctx.save_for_backward(z, weights, codes)
        ctx.scale, ctx.rows = scale, rows
        return total

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, weights, codes = ctx.saved_tensors
        scale, rows = ctx.scale, ctx.rows
        codes_t = codes.t()
        parts = []
        for start in range(0, z.shape[1], rows):
            chunk = z[:, start : start + rows]
            probs = torch.softmax(torch.matmul(chunk, codes_t) * scale, -1)  # (G, n, K)
            inner = torch.matmul(probs, grad.unsqueeze(-1))  # (G, n, 1) = <p, G_>
            w = weights[start : start + rows].view(1, -1, 1)
            grad_logits = probs * (grad.unsqueeze(1) - inner) * w  # (G, n, K)
            parts.append(torch.matmul(grad_logits, codes) * scale)  # (G, n, g)
        grad_z = torch.cat(parts, 1) if parts else torch.zeros_like(z)
        return grad_z, None, None, None, None
