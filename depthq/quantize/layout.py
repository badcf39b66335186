"""Moving feature tensors to and from the codebook layout (M, N, D).

Every quantizer in depthq works on one layout: M codebooks, each with its own N vectors of
dimension D, stacked on a leading axis so that all codebooks are searched and updated in one
batched computation. This module owns the reshapes between the user's tensor and that layout.

Supported inputs (C = channels, padded with zeros up to P*D when C is not a multiple of D):

=================  ===========  ==========================  ====================
input              axis         codebook m quantizes        indices shape
=================  ===========  ==========================  ====================
(B, C, H, W) map   "channel"    channels [mD, (m+1)D)       (B, M, H, W)
(B, C, H, W) map   "spatial"    row h (M = H), C cut in P   (B, P, H, W)
(B, N, C) seq      "channel"    channels [mD, (m+1)D)       (B, N, M)
(B, N, C) seq      "spatial"    position n (M = N)          (B, N, P)
(B, C) vectors     "channel"    sub-vector m (PQ)           (B, M)
=================  ===========  ==========================  ====================

The rule behind the table: indices have the input's shape with the channel axis replaced by the
number of D-sized pieces per position (P = M for "channel"), and the codebook of a piece is given
either by the piece's place in the channel axis ("channel") or by the row it sits in ("spatial").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

AXES = ("channel", "spatial")


@dataclass(frozen=True)
class Layout:
    """How one input shape maps to the codebook layout.

    Attributes:
        axis: "channel" or "spatial".
        rank: rank of the input (2, 3 or 4).
        batch: B.
        spatial: the spatial sizes in channel-last order: (H, W), (N,) or ().
        channels: C, the input's channel count (before padding).
        pieces: P, the number of D-sized pieces per position after padding.
        code_dim: D.
    """

    axis: str
    rank: int
    batch: int
    spatial: tuple[int, ...]
    channels: int
    pieces: int
    code_dim: int

    @property
    def num_codebooks(self) -> int:
        """M: pieces for "channel", the first spatial size (rows) for "spatial"."""
        return self.pieces if self.axis == "channel" else self.spatial[0]

    @property
    def vectors_per_codebook(self) -> int:
        """N, the number of D-dim vectors each codebook quantizes."""
        n = self.batch
        for s in self.spatial:
            n *= s
        return n * self.pieces // self.num_codebooks

    @property
    def index_shape(self) -> tuple[int, ...]:
        """Shape of the int64 index tensor (see the module table)."""
        if self.rank == 4:
            return (self.batch, self.pieces, *self.spatial)
        return (self.batch, *self.spatial, self.pieces)

    # -- tensor <-> (M, N, D) -------------------------------------------------------------

    def _perm(self) -> tuple[int, ...]:
        """Permutation from channel-last pieces (B, *S, P, D) to (M, B, *rest, D)."""
        s = len(self.spatial)
        if self.axis == "channel":
            # (B, *S, P, D) -> (P, B, *S, D)
            return (s + 1, 0, *range(1, s + 1), s + 2)
        # (B, S0, *S_rest, P, D) -> (S0, B, *S_rest, P, D)
        return (1, 0, *range(2, s + 3))

    def to_codebooks(self, x: Tensor) -> Tensor:
        """(input shape) -> (M, N, D), zero-padding channels to P*D. Copies once."""
        if self.rank == 4:
            x = x.movedim(1, -1)  # (B, H, W, C): channel-last
        pad = self.pieces * self.code_dim - self.channels
        if pad:
            x = F.pad(x, (0, pad))
        x = x.reshape(self.batch, *self.spatial, self.pieces, self.code_dim)
        x = x.permute(self._perm())
        return x.reshape(self.num_codebooks, self.vectors_per_codebook, self.code_dim)

    def _target_order(self, with_dim: bool) -> tuple[int, ...]:
        """Axes of (B, *S, P[, D]) in the order the user's tensor stores them."""
        s = len(self.spatial)
        if self.rank == 4:  # channel-first: (B, P, [D,] H, W)
            return (0, s + 1, *((s + 2,) if with_dim else ()), *range(1, s + 1))
        return tuple(range(s + 2 + with_dim))

    def _restore(self, t: Tensor, with_dim: bool) -> Tensor:
        """(M, N[, D]) -> the user's axis order with one copy (channels still padded)."""
        perm = self._perm() if with_dim else self._perm()[:-1]
        sizes = [self.batch, *self.spatial, self.pieces, self.code_dim][: len(perm)]
        t = t.reshape([sizes[p] for p in perm])  # (M, B, ...) as laid out by _perm
        order = self._target_order(with_dim)
        return t.permute([perm.index(a) for a in order])

    def from_codebooks(self, q: Tensor) -> Tensor:
        """(M, N, D) -> the input's shape, dropping the channel padding. One copy."""
        x = self._restore(q, with_dim=True)  # (B, P, D, H, W) or (B, *S, P, D)
        if self.rank == 4:
            x = x.reshape(self.batch, self.pieces * self.code_dim, *self.spatial)
            return x[:, : self.channels].contiguous()
        x = x.reshape(self.batch, *self.spatial, self.pieces * self.code_dim)
        return x[..., : self.channels].contiguous()

    def indices_to_codebooks(self, indices: Tensor) -> Tensor:
        """(index_shape) -> (M, N)."""
        if self.rank == 4:
            indices = indices.movedim(1, -1)  # (B, H, W, P)
        perm = self._perm()[:-1]  # same permutation without the D axis
        return indices.permute(perm).reshape(self.num_codebooks, self.vectors_per_codebook)

    def indices_from_codebooks(self, idx: Tensor) -> Tensor:
        """(M, N) -> (index_shape)."""
        return self._restore(idx, with_dim=False).contiguous()

    # -- position masks ------------------------------------------------------------------

    def mask_to_codebooks(self, mask: Tensor) -> Tensor:
        """A position mask (the input's shape without its channel axis, see
        :func:`check_mask`) -> (M, N) bool: for every vector of every codebook, whether its
        position is unmasked. The P pieces of a position share its flag."""
        if self.rank == 4:  # (B, H, W) -> (B, P, H, W)
            pieces = mask.unsqueeze(1).expand(self.batch, self.pieces, *self.spatial)
        else:  # (B, N) -> (B, N, P) or (B,) -> (B, P)
            pieces = mask.unsqueeze(-1).expand(*mask.shape, self.pieces)
        return self.indices_to_codebooks(pieces)

    def broadcast_mask(self, mask: Tensor) -> Tensor:
        """A position mask with a size-1 channel axis, broadcastable to the input:
        (B, 1, H, W), (B, N, 1) or (B, 1)."""
        return mask.unsqueeze(1) if self.rank == 4 else mask.unsqueeze(-1)


def position_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The input's shape without its channel axis: (B, H, W), (B, N) or (B,)."""
    if len(shape) == 4:
        return (shape[0], *shape[2:])
    return tuple(shape[:-1])


def check_mask(mask: Tensor | None, shape: torch.Size | tuple[int, ...]) -> None:
    """Raise unless ``mask`` is None or a bool tensor of the input's shape without its channel
    axis ((B, H, W) for a (B, C, H, W) map, (B, N) for a (B, N, C) sequence, (B,) for (B, C)).

    Raises:
        TypeError: not a bool tensor.
        ValueError: the wrong shape; the message gives the expected one.
    """
    if mask is None:
        return
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {type(mask).__name__} {getattr(mask, 'dtype', '')}")
    expected = position_shape(shape)
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"mask must have the input's shape without its channel axis, {expected} for an input of "
            f"shape {tuple(shape)}, got {tuple(mask.shape)}"
        )


def layout_for_input(
    shape: torch.Size | tuple[int, ...],
    *,
    axis: str,
    channels: int,
    code_dim: int,
    num_codebooks: int,
) -> Layout:
    """Check an input shape against the quantizer's configuration and describe its layout.

    Raises:
        ValueError: wrong rank, wrong channel count, or (spatial) a row count that does not
            match the number of codebooks; the message says what was expected and what came.
    """
    rank = len(shape)
    if rank not in (2, 3, 4):
        raise ValueError(
            "expected a (B, C, H, W) feature map, a (B, N, C) sequence or a (B, C) batch of "
            f"vectors, got a tensor of rank {rank} with shape {tuple(shape)}"
        )
    c = shape[1] if rank == 4 else shape[-1]
    if c != channels:
        where = "dim 1" if rank == 4 else "the last dim"
        raise ValueError(f"expected {channels} channels in {where} of the input, got {c} (input shape {tuple(shape)})")
    spatial = tuple(shape[2:]) if rank == 4 else tuple(shape[1:-1])
    pieces = -(-channels // code_dim)
    if axis == "spatial":
        if rank == 2:
            raise ValueError(
                'axis="spatial" needs a spatial axis: a (B, C, H, W) map or a (B, N, C) '
                f"sequence, got a (B, C) batch of vectors with shape {tuple(shape)}"
            )
        if spatial[0] != num_codebooks:
            raise ValueError(
                f'axis="spatial" gives each row its own codebook: expected {num_codebooks} '
                f"rows (num_codebooks), got {spatial[0]} (input shape {tuple(shape)})"
            )
    return Layout(
        axis=axis,
        rank=rank,
        batch=shape[0],
        spatial=spatial,
        channels=channels,
        pieces=pieces,
        code_dim=code_dim,
    )


def layout_for_indices(
    shape: torch.Size | tuple[int, ...],
    *,
    axis: str,
    channels: int,
    code_dim: int,
    num_codebooks: int,
) -> Layout:
    """The layout that produced an index tensor of this shape (for ``decode``)."""
    rank = len(shape)
    if rank not in (2, 3, 4):
        raise ValueError(
            "expected indices of shape (B, P, H, W), (B, N, P) or (B, P), "
            f"got a tensor of rank {rank} with shape {tuple(shape)}"
        )
    pieces = -(-channels // code_dim)
    p = shape[1] if rank == 4 else shape[-1]
    if p != pieces:
        raise ValueError(
            f"expected {pieces} codes per position in the indices "
            f"({'dim 1' if rank == 4 else 'the last dim'}), got {p} (shape {tuple(shape)})"
        )
    spatial = tuple(shape[2:]) if rank == 4 else tuple(shape[1:-1])
    fake = (shape[0], channels, *spatial) if rank == 4 else (shape[0], *spatial, channels)
    return layout_for_input(fake, axis=axis, channels=channels, code_dim=code_dim, num_codebooks=num_codebooks)
