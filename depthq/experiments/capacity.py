"""Representation capacity and cost of DQ versus VQ (spec section 2, Eq. 2; ``depthq capacity``).

A quantizer's cost is its number of code vectors; its capacity is the number of distinct
outputs per position. DQ with M codebooks of K codes: cost M*K, capacity K^M (M*log2 K bits).
VQ with K codes: cost K, capacity K, so VQ needs K^M codes to match DQ: exponential versus
linear cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from depthq.errors import UsageError
from depthq.tables import markdown_table


@dataclass(frozen=True)
class Capacity:
    """Capacity and cost of one DQ configuration and of the VQ that matches its capacity."""

    num_codebooks: int
    codebook_size: int
    code_dim: int
    positions: int  # vectors per codebook per image (H*W for a (C, H, W) feature map)
    bits_per_position: float  # M * log2 K
    bits_per_image: float  # positions * M * log2 K
    code_vectors: int  # cost: M * K
    codebook_parameters: int  # M * K * D floats
    vq_codebook_size: int  # K^M: VQ codes needed for the same capacity
    vq_code_dim: int  # the VQ codes are M*D-dimensional
    vq_codebook_parameters: int  # K^M * M * D floats
    vq_bits_same_cost: float  # log2(M*K): what a VQ with DQ's cost can express per position


def capacity(num_codebooks: int, codebook_size: int, code_dim: int, height: int = 1, width: int = 1) -> Capacity:
    """Capacity of DQ(M, K, D) on an (M*D, height, width) feature map, and the matching VQ."""
    for name, v in (
        ("num_codebooks", num_codebooks),
        ("codebook_size", codebook_size),
        ("code_dim", code_dim),
        ("height", height),
        ("width", width),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be an int >= 1, got {v!r}")
    m, k, d = num_codebooks, codebook_size, code_dim
    positions = height * width
    bits = m * math.log2(k)
    vq_k = k**m
    return Capacity(
        num_codebooks=m,
        codebook_size=k,
        code_dim=d,
        positions=positions,
        bits_per_position=bits,
        bits_per_image=positions * bits,
        code_vectors=m * k,
        codebook_parameters=m * k * d,
        vq_codebook_size=vq_k,
        vq_code_dim=m * d,
        vq_codebook_parameters=vq_k * m * d,
        vq_bits_same_cost=math.log2(m * k),
    )


def _big(n: int) -> str:
    """Exact below 10^12, else as a power of two and ten."""
    return f"{n:,}" if n < 10**12 else f"2^{math.log2(n):.1f} ≈ 10^{math.log10(n):.1f}"


def format_table(rows: list[Capacity]) -> str:
    headers = [
        "M",
        "K",
        "D",
        "positions",
        "bits/position",
        "bits/image",
        "DQ code vectors",
        "DQ codebook floats",
        "VQ codes for the same capacity (K^M)",
        "VQ codebook floats",
        "VQ bits/position at DQ's cost",
    ]
    cells = [
        [
            str(r.num_codebooks),
            str(r.codebook_size),
            str(r.code_dim),
            f"{r.positions:,}",
            f"{r.bits_per_position:g}",
            f"{r.bits_per_image:,.0f}",
            f"{r.code_vectors:,}",
            f"{r.codebook_parameters:,}",
            _big(r.vq_codebook_size),
            _big(r.vq_codebook_parameters),
            f"{r.vq_bits_same_cost:.2f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, cells, align="r")
