"""Nearest-code search for M codebooks at once, in chunks, in fp32.

For codebook m and vector x, the nearest code under squared L2 is

    argmin_k ||x - e_k||^2 = argmin_k ( ||e_k||^2 - 2 <x, e_k> )

(||x||^2 does not depend on k). One ``baddbmm`` computes the bracket for all M codebooks: a
batched (n, D) x (D, K) matrix product plus a broadcast add, so the search runs at matrix-product
speed. The (M, n, K) score block is the only large temporary; it is bounded by chunking N, so
memory does not grow as M*N*K for large inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Score elements per chunk (M * n * K). 2**22 fp32 scores = 16 MiB: big enough for the matrix
#: product to run at full speed, small enough to stay out of the way. Measured in
#: benchmarks/quantizer.py.
DEFAULT_CHUNK_ELEMENTS = 2**22


def chunk_rows(num_codebooks: int, codebook_size: int, chunk_elements: int | None) -> int:
    """Vectors per chunk so that a (M, n, K) score block holds about ``chunk_elements``."""
    budget = DEFAULT_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    return max(1, budget // (num_codebooks * codebook_size))


@torch.no_grad()
def nearest_codes(x: Tensor, codebooks: Tensor, chunk_elements: int | None = None) -> Tensor:
    """Index of the nearest code of each vector, for every codebook.

    Args:
        x: (M, N, D) vectors; codebook m is searched for x[m] only.
        codebooks: (M, K, D).
        chunk_elements: bound on M * n * K for one chunk of n vectors (None: the default).

    Returns:
        (M, N) int64 indices into the K codes of each codebook.
    """
    if x.dtype != torch.float32 or codebooks.dtype != torch.float32:
        raise TypeError(
            f"nearest_codes works in fp32, got x {x.dtype} and codebooks {codebooks.dtype}"
        )
    m, n, _ = x.shape
    k = codebooks.shape[1]
    if n == 0:
        return torch.empty(m, 0, dtype=torch.long, device=x.device)
    sq_norms = codebooks.pow(2).sum(-1).unsqueeze(1)  # (M, 1, K)
    codes_t = codebooks.transpose(1, 2)  # (M, D, K)
    rows = min(n, chunk_rows(m, k, chunk_elements))
    # One score buffer for all chunks: a fresh 16 MiB block per chunk costs page faults that
    # were measured to halve the matrix product's speed on CPU.
    scores = torch.empty(m, rows, k, device=x.device)
    values = torch.empty(m, rows, device=x.device)
    out = torch.empty(m, n, dtype=torch.long, device=x.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = scores[:, : stop - start]
        # (M, n, K) = ||e||^2 - 2 x e^T
        torch.baddbmm(sq_norms, x[:, start:stop], codes_t, alpha=-2.0, out=block)
        # min(dim) returns values and indices; on CPU it is ~2.5x faster than argmin.
        torch.min(block, -1, out=(values[:, : stop - start], out[:, start:stop]))
    return out


def gather_codes(codebooks: Tensor, indices: Tensor) -> Tensor:
    """Codes for (M, N) indices: (M, K, D), (M, N) -> (M, N, D)."""
    m, k, d = codebooks.shape
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * k  # (M, 1)
    flat = (indices + offsets).reshape(-1)
    return codebooks.reshape(m * k, d).index_select(0, flat).view(m, -1, d)
