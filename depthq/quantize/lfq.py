"""Lookup-free quantization (LFQ): one sign per dimension, an entropy loss for usage.

Yu et al., "Language Model Beats Diffusion: Tokenizer is Key to Visual Generation"
(MAGVIT-v2), ICLR 2024. A d-dim vector z is quantized to q_i = sign(z_i) in {-1, 1} (z_i = 0
gives -1), i.e. the code index sum_i 2^i [z_i > 0], with a straight-through gradient. There
is no codebook to learn; usage comes from the entropy loss

    L_entropy = E[H(q(z))] - gamma * H(E[q(z)])

(per-sample entropy down: confident assignments; batch entropy up: every code used) over
soft assignments q(c | z) = softmax_c(-||z - c||^2 / tau), plus a commitment term
||z - sg(q)||^2. :mod:`depthq.quantize.entropy` computes both entropies in bounded memory: the
per-sample term exactly for any d, the batch term per group of g bits (d = G*g), never an
N x 2^d tensor. The indices are per group: symbol p of a position is the g-bit code
sum_{j<g} 2^j [z_{pg+j} > 0] in [0, 2^g); :meth:`LookupFreeQuantizer.pack_indices` gives the
d-bit index sum_i 2^i [z_i > 0] (d <= 62).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from depthq.quantize import distributed
from depthq.quantize.codebook import code_counts
from depthq.quantize.digits import digits_to_index, index_to_digits
from depthq.quantize.entropy import (
    MeanCodeProbabilities,
    bernoulli_entropy,
    categorical_entropy,
    sign_codes,
)
from depthq.quantize.estimators import masked_mse
from depthq.quantize.layout import check_mask, layout_for_input
from depthq.quantize.output import (
    QuantizerOutput,
    bits_per_position,
    check_indices,
    check_input,
    usage_statistics,
)
from depthq.quantize.search import CPU_CHUNK_ELEMENTS

#: Default bits per entropy group: the largest divisor of d not above this (4,096 codes).
MAX_DEFAULT_GROUP_BITS = 12
#: Largest group accepted: 2^16 codes.
MAX_GROUP_BITS = 16


def _check_float(name: str, value: object, low: float, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (value > low if strict else value >= low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value}")
    return float(value)


class LookupFreeQuantizer(nn.Module):
    """LFQ of d-dim vectors: d bits per position, coded as G symbols of g bits.

    Example::

        lfq = LookupFreeQuantizer(16, group_size=8)    # 2^16 codes, two 8-bit symbols
        x = torch.randn(8, 16, 16, 16)                  # (B, d, H, W)
        out = lfq(x)
        out.quantized.shape                             # (8, 16, 16, 16), values +-1
        out.indices.shape                               # (8, 2, 16, 16), in [0, 256)
        out.loss                                        # 0.1 * entropy + 0.25 * commitment

    Args:
        dim: d, the input's channels (no projection).
        group_size: g bits per symbol and per batch-entropy group; must divide d. Default:
            d itself up to 12 bits, else the largest divisor of d not above 12.
        entropy_weight: weight of L_entropy in ``loss`` (0.1, vector-quantize-pytorch's
            default for MAGVIT-v2's entropy penalty).
        diversity_gamma: gamma, the weight of the batch entropy inside L_entropy (1.0).
        commitment_weight: weight of the commitment ||z - sg(q)||^2 (0.25, VQ-VAE's beta).
        temperature: tau of the soft assignments (0.01, i.e. vector-quantize-pytorch's
            ``inv_temperature=100``).
        chunk_elements: bound on G * n * 2^g soft-assignment elements per chunk (memory knob;
            None: 2**22).

    The entropy terms are computed in training only (0 in eval mode) and are global under
    torch.distributed (sums all-reduced with their gradient, see
    :func:`depthq.quantize.distributed.all_reduce_sum_with_grad`); the commitment is this
    rank's. A position with a non-finite component gets code 0 (every bit -1), is counted in
    ``nonfinite`` (the same figure for each group) and takes no part in the losses.
    """

    _places: Tensor  # (g,) 2^j: the bits' place values
    _alphabet: Tensor  # (groups,) 2^g per group
    _codes: Tensor  # (2^g, g) every code's bits as +-1

    def __init__(
        self,
        dim: int,
        *,
        group_size: int | None = None,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commitment_weight: float = 0.25,
        temperature: float = 0.01,
        chunk_elements: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        if group_size is None:
            group_size = max(g for g in range(1, min(dim, MAX_DEFAULT_GROUP_BITS) + 1) if dim % g == 0)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or not 1 <= group_size <= MAX_GROUP_BITS:
            raise ValueError(f"group_size must be an int in [1, {MAX_GROUP_BITS}], got {group_size!r}")
        if dim % group_size:
            raise ValueError(f"group_size must divide dim: {dim} bits do not split into groups of {group_size}")
        if chunk_elements is not None and (
            isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int) or chunk_elements < 1
        ):
            raise ValueError(f"chunk_elements must be an int >= 1 or None, got {chunk_elements!r}")
        self.in_channels = dim
        self.group_size = group_size
        self.num_groups = dim // group_size
        self.entropy_weight = _check_float("entropy_weight", entropy_weight, 0.0)
        self.diversity_gamma = _check_float("diversity_gamma", diversity_gamma, 0.0)
        self.commitment_weight = _check_float("commitment_weight", commitment_weight, 0.0)
        self.temperature = _check_float("temperature", temperature, 0.0, strict=True)
        self.chunk_elements = chunk_elements
        # int buffers (dtype conversions of the module leave them alone)
        self.register_buffer("_places", 2 ** torch.arange(group_size), persistent=False)  # (g,)
        self.register_buffer("_alphabet", torch.full((self.num_groups,), 2**group_size), persistent=False)
        self.register_buffer("_codes", sign_codes(group_size).long(), persistent=False)  # (2^g, g)

    @property
    def out_channels(self) -> int:
        return self.in_channels

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        """(2^g,) * G."""
        return (2**self.group_size,) * self.num_groups

    @property
    def bits_per_position(self) -> float:
        """d."""
        return bits_per_position(self.alphabet_sizes)

    def extra_repr(self) -> str:
        return (
            f"dim={self.in_channels}, group_size={self.group_size}, entropy_weight={self.entropy_weight}, "
            f"diversity_gamma={self.diversity_gamma}, commitment_weight={self.commitment_weight}, "
            f"temperature={self.temperature}"
        )

    def _layout(self, shape: tuple[int, ...]):
        g = self.group_size
        return layout_for_input(
            shape, axis="channel", channels=self.in_channels, code_dim=g, num_codebooks=self.num_groups
        )

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize ``x`` ((B, d, H, W), (B, N, d) or (B, d)); indices (B, G, H, W), ...."""
        check_input(x)
        layout = self._layout(tuple(x.shape))
        check_mask(mask, x.shape)
        axis = 1 if x.dim() == 4 else -1
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = x.float()
            finite = torch.isfinite(z).all(axis, keepdim=True)  # (B, 1, H, W)
            z = torch.where(finite, z, 0.0)  # no NaN in any gradient
            signs = torch.where(z.detach() > 0, 1.0, -1.0)  # q_i = sign(z_i), 0 -> -1
            quantized = (signs + (z - z.detach())).to(x.dtype)  # +-1 exactly, straight-through
            bits = layout.to_codebooks(z.detach() > 0).long()  # (G, N, g)
            idx = (bits * self._places).sum(-1) * layout.mask_to_codebooks(finite.squeeze(axis))  # (G, N)

            keep = finite if mask is None else finite & layout.broadcast_mask(mask)  # losses
            commitment = masked_mse(z, signs, keep)
            valid = None if mask is None else layout.mask_to_codebooks(mask)  # (G, N), statistics
            counts = code_counts(idx, 2**self.group_size, valid)  # (G, 2^g)
            bad = ~finite if mask is None else ~finite & layout.broadcast_mask(mask)
            nonfinite = bad.sum().expand(self.num_groups).clone()  # (G,) int64
            zero = torch.zeros((), device=x.device)
            per_sample = batch = zero
            if self.training:
                distributed.all_reduce_sum_(counts, nonfinite)
                per_sample, batch = self._entropies(
                    layout.to_codebooks(z), layout.mask_to_codebooks(keep.squeeze(axis))
                )
            entropy_loss = per_sample - self.diversity_gamma * batch
            loss = self.entropy_weight * entropy_loss + self.commitment_weight * commitment
        perplexity, usage = usage_statistics(counts, self._alphabet)
        return QuantizerOutput(
            quantized=quantized,
            indices=layout.indices_from_codebooks(idx),
            loss=loss,
            commitment=commitment,
            codebook_loss=zero,
            perplexity=perplexity,
            usage=usage,
            counts=counts,
            nonfinite=nonfinite,
            per_sample_entropy=per_sample,
            batch_entropy=batch,
        )

    def _entropies(self, z: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """(G, N, g) fp32 vectors with autograd and (G, N) bool weights -> E[H(q(z))] and
        H(E[q(z)]), each summed over the G groups, over all ranks."""
        weights = keep[0].float()  # (N,): the groups of a position share its flag
        # per-sample: sum over bits of the Bernoulli entropy of sigmoid(4 z / tau), exact
        sample_sum = (bernoulli_entropy(z * (4.0 / self.temperature)).sum((0, 2)) * weights).sum()
        k = 2**self.group_size
        budget = CPU_CHUNK_ELEMENTS if self.chunk_elements is None else self.chunk_elements
        rows = max(1, budget // (self.num_groups * k))
        prob_sum = MeanCodeProbabilities.apply(z, weights, self._codes.float(), 2.0 / self.temperature, rows)  # (G, K)
        packed = torch.cat([sample_sum.view(1), weights.sum().view(1), prob_sum.reshape(-1)])
        packed = distributed.all_reduce_sum_with_grad(packed)  # one collective for the three
        total = packed[1].clamp(min=1.0)
        per_sample = packed[0] / total
        mean_probs = packed[2:].view(self.num_groups, k) / total  # (G, K)
        return per_sample, categorical_entropy(mean_probs).sum()

    # -- indices ---------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Group codes ((B, G, H, W), (B, N, G) or (B, G)) -> the +-1 vectors (fp32)."""
        indices = check_indices(indices)
        if indices.dim() not in (2, 3, 4):
            raise ValueError(f"expected indices of rank 2, 3 or 4, got shape {tuple(indices.shape)}")
        layout = self._layout(self._input_shape(indices))
        idx = layout.indices_to_codebooks(indices)  # (G, N)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= 2**self.group_size):
            raise ValueError(f"indices must lie in [0, {2**self.group_size}), got [{int(idx.min())}, {int(idx.max())}]")
        bits = torch.div(idx.unsqueeze(-1), self._places, rounding_mode="floor") % 2  # (G, N, g)
        return layout.from_codebooks(bits.float() * 2 - 1)

    def _input_shape(self, indices: Tensor) -> tuple[int, ...]:
        axis = 1 if indices.dim() == 4 else indices.dim() - 1
        if indices.shape[axis] != self.num_groups:
            raise ValueError(f"expected {self.num_groups} group codes per position, got shape {tuple(indices.shape)}")
        shape = list(indices.shape)
        shape[axis] = self.in_channels
        return tuple(shape)

    def pack_indices(self, indices: Tensor) -> Tensor:
        """Group codes -> the d-bit index sum_i 2^i [z_i > 0], channel axis of size 1."""
        return digits_to_index(check_indices(indices), self.alphabet_sizes)

    def unpack_indices(self, index: Tensor) -> Tensor:
        """The inverse of :meth:`pack_indices`."""
        return index_to_digits(check_indices(index), self.alphabet_sizes)
