"""Finite Scalar Quantization (FSQ): a fixed grid per dimension, no codebook to learn.

Mentzer, Minnen, Agustsson & Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
ICLR 2024. Dimension i of a d-dim vector has L_i levels. With h_i = floor(L_i / 2) and
o_i = 0.5 for even L_i (0 for odd), spec section 8:

    y_i = h_i tanh(z_i) - o_i                      bound, shifted by 0.5 for even L_i
    k_i = clamp(round(y_i), -h_i, h_i - [L_i even])   one of L_i integers
    q_i = (k_i + o_i) / h_i                        back, in [-1, 1]

so odd L_i give the levels {-1, ..., 1} in steps of 1/h_i and even L_i the symmetric ones
{(-h_i + 1/2)/h_i, ..., (h_i - 1/2)/h_i} (e.g. L = 4: -3/4, -1/4, 1/4, 3/4). The clamp only
acts where tanh saturates to exactly +-1 in fp32 (it would otherwise add an L_i + 1-th level
for even L_i). The gradient is straight-through round(): dq_i/dz_i = d tanh(z_i)/dz_i.

The digit of dimension i is k_i + h_i in [0, L_i); a position's code is the mixed-radix index
sum_i digit_i prod_{j<i} L_j (:mod:`depthq.quantize.digits`), the paper's implicit codebook of
prod_i L_i codes. The bound, the rounding and the digits run in fp32 whatever the autocast: in
bf16 (8 significant bits) neighbouring levels of a large grid and large indices collapse,
which is how vector-quantize-pytorch's FSQ used about half its codes under bf16 (its issue
114). The paper's suggested levels: 2^8 [8, 6, 5]; 2^10 [8, 5, 5, 5]; 2^12 [7, 5, 5, 5, 5];
2^14 [8, 8, 8, 6, 5]; 2^16 [8, 8, 8, 5, 5, 5].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from depthq.quantize import distributed
from depthq.quantize.codebook import code_counts
from depthq.quantize.digits import digits_to_index, index_to_digits
from depthq.quantize.layout import check_mask, layout_for_input
from depthq.quantize.output import (
    QuantizerOutput,
    bits_per_position,
    check_indices,
    check_input,
    usage_statistics,
)


class FiniteScalarQuantizer(nn.Module):
    """FSQ over d = len(levels) channels: every channel rounded onto its own L_i-level grid.

    Example::

        fsq = FiniteScalarQuantizer([8, 5, 5, 5])    # 1000 codes, log2(1000) = 9.97 bits
        x = torch.randn(8, 4, 16, 16)                 # (B, d, H, W)
        out = fsq(x)
        out.quantized.shape                           # (8, 4, 16, 16), values on the grid
        out.indices.shape                             # (8, 4, 16, 16): digit i in [0, L_i)
        fsq.pack_indices(out.indices).shape           # (8, 1, 16, 16): code in [0, 1000)
        torch.equal(fsq.decode(out.indices), out.quantized)   # True

    Args:
        levels: L_1..L_d, each an int >= 2 (odd or even). No projection: the input has d
            channels (a 1x1 convolution before it chooses d).

    No state, no loss (``loss``, ``commitment`` and ``codebook_loss`` are 0). ``forward`` takes
    the interface's inputs and ``mask`` (:class:`depthq.quantize.output.Quantizer`); a position
    with a non-finite component gets code 0 (every digit 0) and is counted in ``nonfinite``
    (the same figure for each of the d symbols), and it gets no gradient.
    """

    _levels: Tensor  # (d,) int64 buffer, L_1..L_d

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
            raise TypeError(f"levels must be a non-empty sequence of ints, got {levels!r}")
        for level in levels:
            if isinstance(level, bool) or not isinstance(level, int):
                raise TypeError(f"levels must be ints, got {type(level).__name__} {level!r} in {list(levels)}")
            if level < 2:
                raise ValueError(f"every level count must be >= 2, got {level} in {list(levels)}")
        self.levels = tuple(levels)
        self.in_channels = len(self.levels)
        # int buffers: .half() / .to(dtype) leave them alone; the float grid is built per call
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.int64), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.in_channels

    @property
    def alphabet_sizes(self) -> tuple[int, ...]:
        """(L_1, ..., L_d): one digit per dimension."""
        return self.levels

    @property
    def bits_per_position(self) -> float:
        """sum_i log2 L_i."""
        return bits_per_position(self.levels)

    @property
    def codebook_size(self) -> int:
        """prod_i L_i, the size of the implicit codebook."""
        return math.prod(self.levels)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}"

    # -- the grid --------------------------------------------------------------------------

    def _grid(self, rank: int) -> tuple[Tensor, Tensor, Tensor]:
        """h = floor(L/2), the even-L offset o and the top integer h - [L even], fp32, shaped to
        broadcast along the channel axis of a rank-``rank`` tensor."""
        shape = [1] * rank
        shape[1 if rank == 4 else -1] = self.in_channels
        levels = self._levels.view(shape)
        even = (levels % 2 == 0).float()
        half = torch.div(levels, 2, rounding_mode="floor").float()
        return half, 0.5 * even, half - even

    def _values(self, digits: Tensor) -> Tensor:
        """Digits -> grid values (k + o) / h, k = digit - h; the one formula forward and decode
        share, so that decode reproduces ``quantized`` bit for bit."""
        half, offset, _ = self._grid(digits.dim())
        return (digits.float() - half + offset) / half

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize ``x`` ((B, d, H, W), (B, N, d) or (B, d)); ``indices`` are the digits,
        shaped like x."""
        check_input(x)
        d = self.in_channels
        layout = layout_for_input(tuple(x.shape), axis="channel", channels=d, code_dim=1, num_codebooks=d)
        check_mask(mask, x.shape)
        axis = 1 if x.dim() == 4 else -1
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = x.float()
            finite = torch.isfinite(z).all(axis, keepdim=True)  # (B, 1, H, W): per position
            z = torch.where(finite, z, 0.0)  # no NaN reaches tanh's gradient
            bounded = torch.tanh(z)  # (-1, 1): the differentiable part
            half, offset, top = self._grid(x.dim())
            k = torch.round(half * bounded.detach() - offset)  # fp32, ties to even
            k = torch.minimum(torch.maximum(k, -half), top)
            digits = torch.where(finite, (k + half).long(), 0)  # (B, d, H, W) in [0, L_i)
            # the grid values exactly, with the gradient of tanh (straight-through round)
            quantized = (self._values(digits) + (bounded - bounded.detach())).to(x.dtype)

            keep = None if mask is None else layout.broadcast_mask(mask)  # (B, 1, H, W)
            flat = layout.indices_to_codebooks(digits)  # (d, N)
            valid = None if mask is None else layout.mask_to_codebooks(mask)  # (d, N)
            counts = code_counts(flat, max(self.levels), valid)  # (d, L_max)
            bad = ~finite if keep is None else ~finite & keep
            nonfinite = bad.sum().expand(d).clone()  # (d,) int64
            if self.training:  # global figures, as DepthwiseQuantizer's
                distributed.all_reduce_sum_(counts, nonfinite)
        perplexity, usage = usage_statistics(counts, self._levels)
        zero = torch.zeros((), device=x.device)
        return QuantizerOutput(
            quantized=quantized,
            indices=digits,
            loss=zero,
            commitment=zero,
            codebook_loss=zero,
            perplexity=perplexity,
            usage=usage,
            counts=counts,
            nonfinite=nonfinite,
        )

    # -- indices ---------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Digits ((B, d, H, W), (B, N, d) or (B, d)) -> grid values (fp32); reproduces
        ``quantized``."""
        digits = check_indices(indices)
        axis = 1 if digits.dim() == 4 else -1
        if digits.dim() not in (2, 3, 4) or digits.shape[axis] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} digits per position on the channel axis of a rank 2-4 "
                f"tensor, got shape {tuple(digits.shape)}"
            )
        limits = self._levels.view([1] * (digits.dim() - 1) + [-1]) if axis == -1 else self._levels.view(1, -1, 1, 1)
        if digits.numel() and bool(((digits < 0) | (digits >= limits)).any()):
            raise ValueError(f"digit i must lie in [0, L_i) for levels {list(self.levels)}")
        return self._values(digits)

    def pack_indices(self, digits: Tensor) -> Tensor:
        """Digits -> the implicit codebook's index sum_i digit_i prod_{j<i} L_j, with a channel
        axis of size 1 ((B, 1, H, W), (B, N, 1), (B, 1))."""
        return digits_to_index(check_indices(digits), self.levels)

    def unpack_indices(self, index: Tensor) -> Tensor:
        """The inverse of :meth:`pack_indices`."""
        return index_to_digits(check_indices(index), self.levels)

    def implicit_codebook(self) -> Tensor:
        """(prod L_i, d) fp32: the grid value of every code, row c for index c."""
        index = torch.arange(self.codebook_size, device=self._levels.device).unsqueeze(-1)  # (K, 1)
        return self._values(self.unpack_indices(index))
