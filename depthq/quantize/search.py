"""Nearest-code search for M codebooks at once, in fp32, with two backends.

For codebook m and vector x, the nearest code under squared L2 is

    argmin_k ||x - e_k||^2 = argmin_k ( ||e_k||^2 - 2 <x, e_k> )

(||x||^2 does not depend on k). Two ways to compute the bracket and its argmin:

- ``"torch"``: one ``baddbmm`` per chunk of vectors computes the (M, n, K) scores for all M
  codebooks (a batched (n, D) x (D, K) matrix product plus a broadcast add), then ``min`` over
  K. The score block is the only large temporary; chunking N bounds it (see
  :func:`default_chunk_elements`). It runs everywhere and is the CPU path.
- ``"triton"``: a fused kernel (:mod:`depthq.quantize.triton_search`) that keeps a running
  argmin in registers and never writes the score block. CUDA only (or Triton's CPU interpreter,
  ``TRITON_INTERPRET=1``, for tests); needs the optional ``triton`` package.

``"auto"`` picks the torch path today: the Triton kernel has not been measured on a GPU yet
(``benchmarks/quantizer.py --device cuda`` times both), so it is opt-in until a measurement
says where it is faster.

Both backends score in fp32 (the torch path with TF32 and reduced-precision matmuls switched
off for the call), and both break exact ties towards the lowest index, as ``torch.min(dim)``
documents. Both also return each vector's best score: with finite codebooks it is finite
exactly when the vector is (a NaN or inf component makes every score NaN or infinite; so does
a distance beyond fp32's range), which flags non-finite vectors without another pass over x.
:func:`nearest_codes` (and the quantizer) give such vectors code 0, whatever the backend.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch
from torch import Tensor

#: The search backends accepted by :func:`nearest_codes` and ``DepthwiseQuantizer(search=...)``.
SEARCH_BACKENDS = ("auto", "torch", "triton")

#: Score elements per chunk (M * n * K) on CPU. 2**22 fp32 scores = 16 MiB: big enough for the
#: matrix product to run at full speed, small enough to stay in cache-friendly territory.
#: Measured in benchmarks/quantizer.py on the 2-core development machine.
CPU_CHUNK_ELEMENTS = 2**22
#: Former name of :data:`CPU_CHUNK_ELEMENTS`, kept for callers.
DEFAULT_CHUNK_ELEMENTS = CPU_CHUNK_ELEMENTS
#: On CUDA the score block may use this fraction of the memory free at first use...
CUDA_FREE_FRACTION = 1 / 16
#: ...but no more than this many bytes (2**26 fp32 scores). Chosen without a GPU measurement;
#: ``benchmarks/quantizer.py --device cuda`` sweeps the budget so it can be set from data.
CUDA_CHUNK_BYTES_CAP = 2**28


@functools.cache
def _cuda_chunk_elements(index: int) -> int:
    free, _ = torch.cuda.mem_get_info(index)  # a driver query, not a stream synchronisation
    budget = min(int(free * CUDA_FREE_FRACTION), CUDA_CHUNK_BYTES_CAP)
    return max(CPU_CHUNK_ELEMENTS, budget // 4)  # fp32 scores


def default_chunk_elements(device: torch.device | str) -> int:
    """Score elements per chunk when the caller gives none.

    CPU (and any non-CUDA device): :data:`CPU_CHUNK_ELEMENTS`. CUDA: a budget in bytes,
    :data:`CUDA_FREE_FRACTION` of the device's free memory when first asked (cached per device,
    so the answer does not change from step to step), capped at :data:`CUDA_CHUNK_BYTES_CAP`
    and never below the CPU figure.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_CHUNK_ELEMENTS
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _cuda_chunk_elements(index)


def chunk_rows(num_codebooks: int, codebook_size: int, chunk_elements: int | None) -> int:
    """Vectors per chunk so that a (M, n, K) score block holds about ``chunk_elements``
    (None: the CPU default)."""
    budget = CPU_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    return max(1, budget // (num_codebooks * codebook_size))


def nonfinite_vectors(x: Tensor) -> Tensor:
    """(M, N, D) -> (M, N) bool: vectors with a NaN/inf component (or an fp32-overflowing sum).

    One reduction over D; no host synchronisation. (The search finds the same vectors from its
    scores for free; this is for callers that need the answer before searching.)
    """
    return ~torch.isfinite(x.sum(-1))


@contextlib.contextmanager
def _ieee_fp32_matmul() -> Iterator[None]:
    """Full fp32 matrix products for the duration (no TF32, no bf16 passes), then restore.

    ``torch.set_float32_matmul_precision("high")`` is a common global speed setting; scores
    computed in TF32 (10-bit mantissa) would pick wrong codes.
    """
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _torch_search(x: Tensor, codebooks: Tensor, chunk_elements: int) -> tuple[Tensor, Tensor]:
    """baddbmm + min over K, chunked over N: (M, N, D), (M, K, D) -> (M, N) int64 indices and
    (M, N) fp32 best scores."""
    m, n, _ = x.shape
    k = codebooks.shape[1]
    sq_norms = codebooks.pow(2).sum(-1).unsqueeze(1)  # (M, 1, K)
    codes_t = codebooks.transpose(1, 2)  # (M, D, K)
    rows = min(n, chunk_rows(m, k, chunk_elements))
    if torch.compiler.is_compiling():
        # The same products and minima as torch.compile can trace them: no out= buffers, and no
        # switch of the matmul precision (a compiled graph keeps the precision set when it was
        # compiled; torch's default, "highest", is exact fp32).
        parts = [torch.baddbmm(sq_norms, x[:, s : s + rows], codes_t, alpha=-2.0).min(-1) for s in range(0, n, rows)]
        return torch.cat([p.indices for p in parts], 1), torch.cat([p.values for p in parts], 1)
    # One score buffer for all chunks: a fresh 16 MiB block per chunk costs page faults that
    # were measured to halve the matrix product's speed on CPU.
    scores = torch.empty(m, rows, k, device=x.device)
    # `values` and `out` have the same (N, 1) strides, so the two outputs of min have equal
    # strides in every chunk: CUDA's reduction requires it (CPU does not check).
    values = torch.empty(m, n, device=x.device)
    out = torch.empty(m, n, dtype=torch.long, device=x.device)
    with _ieee_fp32_matmul():
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = scores[:, : stop - start]
            # (M, n, K) = ||e||^2 - 2 x e^T
            torch.baddbmm(sq_norms, x[:, start:stop], codes_t, alpha=-2.0, out=block)
            # min(dim) returns values and indices; on CPU it is ~2.5x faster than argmin.
            torch.min(block, -1, out=(values[:, start:stop], out[:, start:stop]))
    return out, values


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_search(search: str, device: torch.device) -> str:
    """The backend that runs for ``search`` on ``device``: "torch" or "triton".

    Raises:
        ValueError: an unknown name, or "triton" on a CPU tensor outside Triton's interpreter.
        ImportError: "triton" without the triton package.
    """
    if search not in SEARCH_BACKENDS:
        raise ValueError(f"search must be one of {SEARCH_BACKENDS}, got {search!r}")
    if search != "triton":
        return "torch"  # "auto": the torch path until a GPU measurement says otherwise
    if importlib.util.find_spec("triton") is None:
        raise ImportError(
            "search='triton' needs the triton package (pip install triton; it "
            "ships with CUDA builds of torch); use search='torch' or 'auto'"
        )
    if device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"search='triton' runs on CUDA tensors (or on CPU under Triton's "
            f"interpreter, TRITON_INTERPRET=1), got a tensor on {device}"
        )
    return "triton"


@torch.no_grad()
def nearest_codes_and_scores(
    x: Tensor, codebooks: Tensor, chunk_elements: int | None = None, *, search: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Nearest code of each vector for every codebook, and its score.

    Args:
        x: (M, N, D) fp32 vectors; codebook m is searched for x[m] only.
        codebooks: (M, K, D) fp32.
        chunk_elements: bound on M * n * K scores for one chunk of n vectors (torch backend;
            None: :func:`default_chunk_elements` of the device).
        search: "auto", "torch" or "triton" (see the module docstring).

    Returns:
        (M, N) int64 indices into the K codes of each codebook, ties to the lowest index, and
        the (M, N) fp32 best scores min_k ||e_k||^2 - 2 <x, e_k> (the squared distance minus
        ||x||^2). Where a score is not finite the index is unspecified: the caller masks it
        with the same ``isfinite`` it uses to count such vectors (:func:`nearest_codes` sets 0).
    """
    if x.dtype != torch.float32 or codebooks.dtype != torch.float32:
        raise TypeError(f"nearest_codes works in fp32, got x {x.dtype} and codebooks {codebooks.dtype}")
    backend = resolve_search(search, x.device)
    m, n, _ = x.shape
    if n == 0:
        return (torch.empty(m, 0, dtype=torch.long, device=x.device), torch.empty(m, 0, device=x.device))
    if backend == "triton":
        from depthq.quantize.triton_search import triton_nearest_codes  # optional: triton

        idx, scores = triton_nearest_codes(x, codebooks)
    else:
        budget = default_chunk_elements(x.device) if chunk_elements is None else chunk_elements
        idx, scores = _torch_search(x, codebooks, budget)
    return idx, scores


def nearest_codes(x: Tensor, codebooks: Tensor, chunk_elements: int | None = None, *, search: str = "auto") -> Tensor:
    """(M, N, D), (M, K, D) fp32 -> (M, N) int64 index of the nearest code, for every codebook.

    Ties go to the lowest index; vectors that are not finite get code 0. See
    :func:`nearest_codes_and_scores` for the arguments.
    """
    idx, scores = nearest_codes_and_scores(x, codebooks, chunk_elements, search=search)
    return idx.mul_(torch.isfinite(scores))  # code 0 where not finite


def gather_codes(codebooks: Tensor, indices: Tensor) -> Tensor:
    """Codes for (M, N) indices: (M, K, D), (M, N) -> (M, N, D)."""
    m, k, d = codebooks.shape
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * k  # (M, 1)
    flat = (indices + offsets).reshape(-1)
    return codebooks.reshape(m * k, d).index_select(0, flat).view(m, -1, d)
