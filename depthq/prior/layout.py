"""Where the codes of one image sit in the prior's sequence.

A trained autoencoder gives, per hierarchy level l (bottom first), codes (B, M, h_l, w_l): M
codebooks of K_l codes at each of h_l * w_l positions. The prior reads them as one sequence of
positions: the top level first (the decoder uses it first), each level in raster order, every
position holding its M codes::

    codes [(B, M, 8, 8), (B, M, 4, 4)]  ->  sequence (B, 16 + 64, M): top 4x4, then bottom 8x8
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from depthq.evaluate.bits import LevelShape


@dataclass(frozen=True)
class CodeLayout:
    """The codes of one image: their grids, codebooks per position and codebook sizes.

    Attributes:
        codebook_sizes: K of each level, bottom first (as ``ModelConfig.codebook_sizes``).
        codebooks: M, the codes per position (``ModelConfig.codebooks_per_level``).
        grids: (h, w) of each level, bottom first.
    """

    codebook_sizes: tuple[int, ...]
    codebooks: int
    grids: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        object.__setattr__(self, "grids", tuple((int(h), int(w)) for h, w in self.grids))
        if not self.codebook_sizes or len(self.codebook_sizes) != len(self.grids):
            raise ValueError(
                f"a layout needs one grid per level: {len(self.codebook_sizes)} codebook sizes, {len(self.grids)} grids"
            )
        if self.codebooks < 1 or min(self.codebook_sizes) < 1 or min(min(g) for g in self.grids) < 1:
            raise ValueError(f"codebooks, codebook sizes and grid sides must be >= 1, got {self}")
        if max(self.codebook_sizes) > 2**16:
            raise ValueError(f"codebook sizes above 65536 do not fit the uint16 code cache, got {self.codebook_sizes}")

    @classmethod
    def of(cls, model_config, image_size: int) -> CodeLayout:
        """The layout of a ``ModelConfig``'s codes for square images of side ``image_size``."""
        model_config.check_image_size(image_size)
        grids = tuple((image_size // model_config.level_stride(lv),) * 2 for lv in range(model_config.num_levels))
        return cls(tuple(model_config.codebook_sizes), model_config.codebooks_per_level, grids)

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def order(self) -> tuple[int, ...]:
        """Levels in sequence order: top first."""
        return tuple(reversed(range(self.levels)))

    def positions(self, level: int) -> int:
        h, w = self.grids[level]
        return h * w

    @property
    def level_shapes(self) -> tuple[LevelShape, ...]:
        """Each level's code shape (positions, M, K), bottom first: the type the rates take
        (``depthq.evaluate.bits.uniform_rate_bits``)."""
        return tuple(LevelShape(self.positions(lv), self.codebooks, k) for lv, k in enumerate(self.codebook_sizes))

    @property
    def total_positions(self) -> int:
        """T: positions of all levels, the length of the sequence."""
        return sum(self.positions(lv) for lv in range(self.levels))

    def level_of_position(self) -> Tensor:
        """(T,) int64 on the CPU (bookkeeping, also under a meta device context): the level of
        each sequence position."""
        return torch.cat([torch.full((self.positions(lv),), lv, dtype=torch.int64, device="cpu") for lv in self.order])

    def to_sequence(self, codes: Sequence[Tensor]) -> Tensor:
        """Per-level codes (B, M, h_l, w_l), bottom first -> (B, T, M) int64 in sequence order."""
        self.check(codes, values=False)
        return torch.cat([codes[lv].long().flatten(2).transpose(1, 2) for lv in self.order], 1)

    def from_sequence(self, sequence: Tensor) -> list[Tensor]:
        """(B, T, M) -> per-level codes (B, M, h_l, w_l) int64, bottom first."""
        if sequence.dim() != 3 or sequence.shape[1:] != (self.total_positions, self.codebooks):
            raise ValueError(
                f"expected a code sequence (B, {self.total_positions}, {self.codebooks}), got {tuple(sequence.shape)}"
            )
        parts = sequence.split([self.positions(lv) for lv in self.order], 1)
        codes: list[Tensor] = [None] * self.levels  # type: ignore[list-item]
        for lv, part in zip(self.order, parts):
            codes[lv] = part.transpose(1, 2).reshape(-1, self.codebooks, *self.grids[lv]).contiguous()
        return codes

    def check(self, codes: Sequence[Tensor], *, values: bool = True) -> None:
        """ValueError unless ``codes`` are this layout's per-level code tensors (and with
        ``values``, every code in [0, K_l): a host sync, for the edges of the API)."""
        if len(codes) != self.levels:
            raise ValueError(f"expected codes of {self.levels} levels, got {len(codes)}")
        for lv, z in enumerate(codes):
            want = (self.codebooks, *self.grids[lv])
            if z.dim() != 4 or tuple(z.shape[1:]) != want or z.is_floating_point():
                raise ValueError(
                    f"level {lv}: expected integer codes (B, {', '.join(map(str, want))}), "
                    f"got {z.dtype} {tuple(z.shape)}"
                )
        if not values:
            return
        for lv, (z, k) in enumerate(zip(codes, self.codebook_sizes)):
            if z.numel() and (int(z.min()) < 0 or int(z.max()) >= k):
                raise ValueError(f"level {lv}: codes must lie in [0, {k}), got {int(z.min())}..{int(z.max())}")

    def to_dict(self) -> dict:
        return {
            "codebook_sizes": list(self.codebook_sizes),
            "codebooks": self.codebooks,
            "grids": [list(g) for g in self.grids],
        }

    @classmethod
    def from_dict(cls, values: dict) -> CodeLayout:
        return cls(tuple(values["codebook_sizes"]), int(values["codebooks"]), tuple(tuple(g) for g in values["grids"]))
