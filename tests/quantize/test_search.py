import importlib.util

import pytest
import torch
from search_reference import brute_force, integer_grid

from depthq.quantize import search
from depthq.quantize.search import (
    CPU_CHUNK_ELEMENTS,
    CUDA_CHUNK_BYTES_CAP,
    chunk_rows,
    default_chunk_elements,
    gather_codes,
    nearest_codes,
    nearest_codes_and_scores,
    nonfinite_vectors,
)


@pytest.mark.parametrize("chunk", [None, 7, 64, 10_000])
def test_nearest_codes_equals_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 101, 5, generator=g)
    codebooks = torch.randn(3, 17, 5, generator=g)
    idx = nearest_codes(x, codebooks, chunk_elements=chunk)
    assert idx.dtype == torch.int64 and idx.shape == (3, 101)
    assert torch.equal(idx, brute_force(x, codebooks))


def test_chunks_smaller_than_one_row_of_scores_still_work():
    # a budget below M*K gives one vector per chunk
    assert chunk_rows(4, 100, 10) == 1
    x = torch.randn(4, 9, 3)
    codebooks = torch.randn(4, 100, 3)
    assert torch.equal(nearest_codes(x, codebooks, chunk_elements=10), brute_force(x, codebooks))


def test_nearest_codes_rejects_half_precision():
    with pytest.raises(TypeError, match="fp32"):
        nearest_codes(torch.randn(1, 4, 2).half(), torch.randn(1, 3, 2))


def test_gather_codes_picks_rows_of_each_codebook():
    codebooks = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    idx = torch.tensor([[2, 0], [1, 1]])
    out = gather_codes(codebooks, idx)
    assert torch.equal(out[0, 0], codebooks[0, 2])
    assert torch.equal(out[0, 1], codebooks[0, 0])
    assert torch.equal(out[1, 0], codebooks[1, 1])
    assert torch.equal(out[1, 1], codebooks[1, 1])


# -- the chunked torch path: what CUDA requires, ties, precision, non-finite vectors ----------


def test_min_outputs_have_equal_strides_in_every_chunk(monkeypatch):
    """CUDA's reduction rejects min(out=(values, indices)) with different strides (CPU does
    not check): the issue-10 crash. Check it here on CPU, with several chunks and a last,
    partial one."""
    real_min = torch.min

    def strict_min(*args, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            assert out[0].stride() == out[1].stride(), (out[0].stride(), out[1].stride())
        return real_min(*args, **kwargs)

    monkeypatch.setattr(torch, "min", strict_min)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1000, 4, generator=g)
    codebooks = torch.randn(3, 32, 4, generator=g)
    idx = nearest_codes(x, codebooks, chunk_elements=3 * 32 * 300)  # 300 rows: 4 chunks
    monkeypatch.undo()
    assert torch.equal(idx, brute_force(x, codebooks))


@pytest.mark.parametrize("chunk", [None, 5 * 9])
def test_ties_go_to_the_lowest_index(chunk):
    x, codebooks = integer_grid(2, 300, 9, 2)
    codebooks[:, 5] = codebooks[:, 2]  # an exact duplicate: code 5 must never win
    idx = nearest_codes(x, codebooks, chunk_elements=chunk)
    assert not (idx == 5).any()
    # first minimum, by hand: exact integer distances
    dist = ((x[:, :, None, :] - codebooks[:, None]) ** 2).sum(-1)  # (M, N, K)
    first = (dist == dist.min(-1, keepdim=True).values).float().argmax(-1)
    assert torch.equal(idx, first)


def test_reduced_precision_matmul_setting_is_ignored_and_restored():
    torch.set_float32_matmul_precision("medium")  # may allow bf16 passes (TF32 on CUDA)
    try:
        g = torch.Generator().manual_seed(2)
        x = torch.randn(2, 500, 32, generator=g)
        codebooks = torch.randn(2, 64, 32, generator=g)
        idx = nearest_codes(x, codebooks)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert torch.equal(idx, brute_force(x, codebooks))


def test_non_finite_vectors_get_code_zero():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 3, generator=g)
    codebooks = torch.randn(2, 5, 3, generator=g) + 10  # code 0 is nobody's nearest code
    x[0, 1, 2] = float("nan")
    x[1, 4, 0] = float("inf")
    x[1, 5] = torch.tensor([float("-inf"), 1.0, float("inf")])
    bad = nonfinite_vectors(x)
    assert bad.tolist() == [[False, True, False, False, False, False],
                            [False, False, False, False, True, True]]
    idx = nearest_codes(x, codebooks, chunk_elements=5 * 2)
    assert idx[bad].tolist() == [0, 0, 0]
    good = brute_force(torch.where(bad.unsqueeze(-1), 0.0, x), codebooks)
    assert torch.equal(idx[~bad], good[~bad])


def test_scores_are_the_best_distance_minus_the_vector_norm_and_flag_non_finite_vectors():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 50, 3, generator=g)
    codebooks = torch.randn(2, 7, 3, generator=g)
    x[1, 9, 1] = float("nan")
    idx, scores = nearest_codes_and_scores(x, codebooks, chunk_elements=2 * 7 * 8)
    dist = ((x.double()[:, :, None] - codebooks.double()[:, None]) ** 2).sum(-1)  # (M, N, K)
    expected = dist.min(-1).values - x.double().pow(2).sum(-1)
    finite = torch.isfinite(scores)
    assert torch.equal(~finite, nonfinite_vectors(x))
    assert torch.allclose(scores[finite].double(), expected[finite], atol=1e-5)
    assert torch.equal(idx[finite], nearest_codes(x, codebooks)[finite])


def test_chunk_budget_is_the_cpu_constant_on_cpu():
    assert default_chunk_elements("cpu") == CPU_CHUNK_ELEMENTS == 2**22


@pytest.mark.parametrize("free, expected", [
    (2**30, 2**30 // 16 // 4),  # 1/16 of 1 GiB free: 64 MiB of fp32 scores
    (2**37, CUDA_CHUNK_BYTES_CAP // 4),  # capped
    (2**20, CPU_CHUNK_ELEMENTS),  # never below the CPU figure
])
def test_cuda_chunk_budget_follows_free_memory_once(monkeypatch, free, expected):
    search._cuda_chunk_elements.cache_clear()
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free, 2 * free))
    try:
        assert default_chunk_elements(torch.device("cuda", 0)) == expected
        # cached per device: the budget does not move with the memory from step to step
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (0, 2 * free))
        assert default_chunk_elements(torch.device("cuda", 0)) == expected
    finally:
        search._cuda_chunk_elements.cache_clear()


def test_unknown_search_backend_raises():
    with pytest.raises(ValueError, match="search must be one of"):
        nearest_codes(torch.randn(1, 4, 2), torch.randn(1, 3, 2), search="cuda")


def test_triton_backend_without_triton_says_how_to_get_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "triton" else real(name, *a))
    with pytest.raises(ImportError, match="needs the triton package"):
        nearest_codes(torch.randn(1, 4, 2), torch.randn(1, 3, 2), search="triton")


def test_triton_backend_refuses_cpu_tensors_outside_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        nearest_codes(torch.randn(1, 4, 2), torch.randn(1, 3, 2), search="triton")
