"""Fused nearest-code search in Triton: the scores and a running argmin stay in registers.

For codebook m (grid axis 1) and a block of ``BLOCK_N`` vectors (grid axis 0), the kernel walks
the K codes in tiles of ``BLOCK_K``: it computes the (BLOCK_N, BLOCK_K) scores

    s[n, k] = ||e_k||^2 - 2 <x_n, e_k>

with an fp32 ``tl.dot`` (``input_precision="ieee"``: fp32 products and accumulation, no TF32),
takes each row's minimum and its first index in the tile, and keeps the best so far; a later
tile replaces it only when strictly smaller, so an exact tie goes to the lowest index, as
``torch.min(dim)`` does. The (M, N, K) score block of the torch path is never written: the
memory traffic is x, the codebooks and the (M, N) result. All M codebooks run in one launch.

Scores differ from the torch path's only by the summation order of the D products (every
fp32 matrix product has its own), so the two backends give the same indices except where two
codes are within rounding of each other; exact ties (duplicate codes, integer data) resolve
identically. The squared norms come from the same torch expression in both backends, and
``norm - 2 * dot`` rounds once whichever way it is evaluated (the factor 2 is exact).

This module imports triton at import time; :mod:`depthq.quantize.search` imports it only when
``search="triton"`` is asked for. Under ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors in
Triton's interpreter (slow; used by the tests).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor


def _nearest_kernel(
    x_ptr,
    codes_ptr,
    norms_ptr,
    out_ptr,
    best_ptr,
    N,
    stride_xm,
    stride_xn,
    stride_cm,
    stride_ck,
    stride_om,
    K: tl.constexpr,
    D: tl.constexpr,  # compile-time: one kernel per codebook shape
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_D_TILE: tl.constexpr,
):
    pid_n = tl.program_id(0)
    m = tl.program_id(1).to(tl.int64)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) vector indices
    dims = tl.arange(0, BLOCK_D)
    x_base = x_ptr + m * stride_xm
    c_base = codes_ptr + m * stride_cm
    row_ok = rows < N
    if ONE_D_TILE:  # D <= BLOCK_D: load the vectors once, reuse them for every code tile
        x = tl.load(
            x_base + rows[:, None] * stride_xn + dims[None, :], mask=row_ok[:, None] & (dims[None, :] < D), other=0.0
        )  # (BLOCK_N, BLOCK_D)
    best = tl.full((BLOCK_N,), float("inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int32)
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
        code_ok = codes < K
        if ONE_D_TILE:
            c = tl.load(
                c_base + codes[None, :] * stride_ck + dims[:, None],
                mask=code_ok[None, :] & (dims[:, None] < D),
                other=0.0,
            )  # (BLOCK_D, BLOCK_K)
            dot = tl.dot(x, c, input_precision="ieee")  # (BLOCK_N, BLOCK_K) fp32
        else:
            dot = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
            for d0 in range(0, D, BLOCK_D):
                d = d0 + dims
                xt = tl.load(
                    x_base + rows[:, None] * stride_xn + d[None, :], mask=row_ok[:, None] & (d[None, :] < D), other=0.0
                )
                c = tl.load(
                    c_base + codes[None, :] * stride_ck + d[:, None],
                    mask=code_ok[None, :] & (d[:, None] < D),
                    other=0.0,
                )
                dot = tl.dot(xt, c, dot, input_precision="ieee")
        # codes past K score +inf and can never win
        norms = tl.load(norms_ptr + m * K + codes, mask=code_ok, other=float("inf"))
        scores = norms[None, :] - 2.0 * dot
        # a non-finite vector's NaN scores count as +inf: its score stays non-finite (the caller
        # masks its index), and the min is defined on every row (Triton's interpreter raises on
        # an all-NaN row)
        scores = tl.where(scores != scores, float("inf"), scores)
        tile_best, tile_idx = tl.min(scores, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_best < best  # strict: an equal score in a later tile loses
        best = tl.where(better, tile_best, best)
        best_idx = tl.where(better, tile_idx + k0, best_idx)
    tl.store(out_ptr + m * stride_om + rows, best_idx.to(tl.int64), mask=row_ok)
    tl.store(best_ptr + m * stride_om + rows, best, mask=row_ok)


@functools.lru_cache(maxsize=2)
def _compiled(interpret: bool):
    """The jitted kernel; ``triton.jit`` reads TRITON_INTERPRET when it is called, so the
    interpreted and the compiled versions are cached apart."""
    del interpret  # part of the cache key only
    return triton.jit(_nearest_kernel)


def launch_config(code_dim: int, **overrides: int) -> dict[str, int]:
    """Tile sizes and warps for D (``overrides`` replace any of them, for benchmarks).

    tl.dot needs every tile side >= 16, so D is padded to a power of two >= 16; D above 64 is
    walked in 64-wide tiles. Fixed, not autotuned, and not timed on a GPU yet
    (benchmarks/quantizer.py --device cuda times this and two alternatives). Compiled ahead of
    time for sm_90, 4 warps hold D <= 64 in 112-168 registers without spilling; D = 100 spills
    with 4 warps and not with 8.
    """
    block_d = min(max(16, triton.next_power_of_2(code_dim)), 64)
    config = {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_D": block_d, "num_warps": 4 if code_dim <= 64 else 8}
    config.update(overrides)
    config["ONE_D_TILE"] = code_dim <= config["BLOCK_D"]
    return config


def triton_nearest_codes(x: Tensor, codebooks: Tensor, **config: int) -> tuple[Tensor, Tensor]:
    """(M, N, D) fp32, (M, K, D) fp32 -> (M, N) int64 nearest-code indices and (M, N) fp32
    best scores (see the module docstring).

    A non-finite vector has only non-finite scores, so its best score stays non-finite (its
    index is unspecified here; :func:`depthq.quantize.search.nearest_codes_and_scores` sets it
    to 0). ``config`` overrides :func:`launch_config` (tile sizes, warps).
    """
    m, n, d = x.shape
    k = codebooks.shape[1]
    x = x.contiguous()
    codebooks = codebooks.contiguous()
    norms = codebooks.pow(2).sum(-1).contiguous()  # (M, K), the torch path's expression
    out = torch.empty(m, n, dtype=torch.long, device=x.device)
    best = torch.empty(m, n, device=x.device)  # same strides as `out`
    config = launch_config(d, **config)
    grid = (triton.cdiv(n, config["BLOCK_N"]), m)
    kernel = _compiled(os.environ.get("TRITON_INTERPRET", "0") == "1")
    kernel[grid](
        x,
        codebooks,
        norms,
        out,
        best,
        n,
        x.stride(0),
        x.stride(1),
        codebooks.stride(0),
        codebooks.stride(1),
        out.stride(0),
        K=k,
        D=d,
        **config,
    )
    return out, best
