import pytest
import torch

from depthq.quantize.search import chunk_rows, gather_codes, nearest_codes


def brute_force(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Nearest code by explicit distances, one codebook at a time."""
    out = []
    for m in range(x.shape[0]):
        d = ((x[m, :, None, :] - codebooks[m, None, :, :]) ** 2).sum(-1)  # (N, K)
        out.append(d.argmin(-1))
    return torch.stack(out)


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
