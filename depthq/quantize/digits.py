"""Mixed-radix indices: P digits of a position <-> one integer, and back.

A position coded by P symbols, symbol p in [0, L_p), has the single index

    index = sum_p digit_p * prod_{q < p} L_q          (the first symbol least significant)

as FSQ (Mentzer et al., ICLR 2024, appendix A.1) numbers its implicit codebook and as LFQ's
index sum_i 2^i [z_i > 0] (Yu et al., ICLR 2024) is with L_p = 2 (or 2^g per group of g bits).
Digits travel on the channel axis of an index tensor: (B, P, H, W), (B, N, P) or (B, P); the
single index keeps that axis with size 1: (B, 1, H, W), (B, N, 1), (B, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

#: The largest product of radices whose indices fit in int64.
MAX_INDEX_SPACE = 2**63 - 1


def radix_places(radices: Sequence[int]) -> list[int]:
    """Place values prod_{q < p} L_q of the P digits; raises when the index space overflows
    int64."""
    total = math.prod(radices)
    if total > MAX_INDEX_SPACE:
        raise ValueError(
            f"a single index over radices {tuple(radices)} needs {math.log2(total):.1f} bits, more than "
            "int64 holds (63): keep the per-symbol digits instead"
        )
    places, place = [], 1
    for radix in radices:
        places.append(place)
        place *= radix
    return places


def _channel_axis(rank: int) -> int:
    if rank not in (2, 3, 4):
        raise ValueError(f"expected index tensors of rank 2, 3 or 4 ((B, P), (B, N, P), (B, P, H, W)), got rank {rank}")
    return 1 if rank == 4 else -1


def _view(values: Sequence[int], rank: int, device: torch.device) -> Tensor:
    shape = [1] * rank
    shape[_channel_axis(rank)] = len(values)
    return torch.tensor(values, dtype=torch.int64, device=device).view(shape)


def digits_to_index(digits: Tensor, radices: Sequence[int]) -> Tensor:
    """(B, P, H, W) / (B, N, P) / (B, P) digits -> the mixed-radix index, channel axis of size 1.

    Raises:
        ValueError: the wrong number of digits, or a digit outside [0, L_p).
    """
    axis = _channel_axis(digits.dim())
    if digits.shape[axis] != len(radices):
        raise ValueError(f"expected {len(radices)} digits on the channel axis, got shape {tuple(digits.shape)}")
    places = _view(radix_places(radices), digits.dim(), digits.device)
    limits = _view(list(radices), digits.dim(), digits.device)
    digits = digits.long()
    if digits.numel() and bool(((digits < 0) | (digits >= limits)).any()):
        raise ValueError(f"digits must lie in [0, L_p) for radices {tuple(radices)}")
    return (digits * places).sum(axis, keepdim=True)


def index_to_digits(index: Tensor, radices: Sequence[int]) -> Tensor:
    """The inverse of :func:`digits_to_index`: a channel axis of size 1 -> P digits.

    Raises:
        ValueError: the channel axis is not of size 1, or an index outside [0, prod L_p).
    """
    axis = _channel_axis(index.dim())
    if index.shape[axis] != 1:
        raise ValueError(f"expected one index per position (a channel axis of size 1), got shape {tuple(index.shape)}")
    places = _view(radix_places(radices), index.dim(), index.device)
    limits = _view(list(radices), index.dim(), index.device)
    index = index.long()
    if index.numel() and bool(((index < 0) | (index >= math.prod(radices))).any()):
        raise ValueError(f"indices must lie in [0, {math.prod(radices)}) for radices {tuple(radices)}")
    return torch.div(index, places, rounding_mode="floor") % limits
