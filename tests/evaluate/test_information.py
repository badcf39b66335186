"""Behaviour of the information diagnostics against hand computation and known limits."""

import math

import pytest
import torch

from depthq.evaluate.information import (
    CodeStatistics,
    entropy,
    mi_bias,
    miller_madow,
    perplexity,
)


def codes(*columns: torch.Tensor, h: int = 1, w: int = 1) -> torch.Tensor:
    """Stack M code sequences of length N = B*H*W into indices (B, M, H, W)."""
    z = torch.stack(columns, 1)  # (N, M)
    return z.view(-1, h, w, z.shape[1]).permute(0, 3, 1, 2).contiguous()


def collect(z: torch.Tensor, k: int, **kwargs) -> CodeStatistics:
    stats = CodeStatistics(z.shape[1], k, **kwargs)
    stats.update(z)
    return stats


# -- entropy functions -----------------------------------------------------------------------


def test_entropy_of_uniform_constant_and_hand_example():
    assert entropy(torch.full((8,), 5)).item() == pytest.approx(math.log(8), abs=1e-12)
    assert entropy(torch.tensor([0, 7, 0])).item() == 0.0
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy(torch.tensor([1, 3])).item() == pytest.approx(expected, abs=1e-12)
    assert perplexity(torch.tensor([4, 4, 0, 0])).item() == pytest.approx(2.0)


def test_entropy_along_a_dim_and_of_empty_rows():
    counts = torch.tensor([[1, 0], [3, 0], [0, 0]])  # histograms in the columns
    h = entropy(counts, dim=0)
    assert h.shape == (2,) and h[1] == 0.0
    assert h[0].item() == pytest.approx(entropy(torch.tensor([1, 3])).item())
    assert torch.equal(entropy(torch.zeros(2, 4)), torch.zeros(2, dtype=torch.float64))


def test_miller_madow_adds_occupied_bins_over_twice_n():
    counts = torch.tensor([1, 3, 0, 4])  # m = 3 occupied bins, N = 8
    expected = entropy(counts).item() + (3 - 1) / (2 * 8)
    assert miller_madow(counts).item() == pytest.approx(expected, abs=1e-12)
    assert miller_madow(torch.zeros(3)).item() == 0.0


def test_negative_counts_raise():
    with pytest.raises(ValueError, match="non-negative"):
        entropy(torch.tensor([1, -1]))


# -- per-codebook entropy and usage ----------------------------------------------------------


def test_uniform_codes_have_entropy_log_k_and_constant_codes_zero():
    k = 16
    uniform = torch.arange(k).repeat(3)
    stats = collect(codes(uniform, torch.zeros_like(uniform), h=2, w=3), k)
    h = stats.entropies()
    assert h[0].item() == pytest.approx(math.log(k), abs=1e-12)
    assert h[1].item() == 0.0


def test_usage_on_a_hand_example():
    z = codes(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2, 4]))  # K = 5
    usage = collect(z, 5).usage()
    assert torch.allclose(usage["fraction_used"], torch.tensor([0.4, 0.8], dtype=torch.float64))
    assert usage["dead_codes"].tolist() == [3, 1]
    assert usage["perplexity"][0].item() == pytest.approx(2.0)
    assert usage["perplexity"][1].item() == pytest.approx(4.0)


# -- entropy map -----------------------------------------------------------------------------


def test_entropy_map_is_log_k_at_the_random_position_and_zero_elsewhere():
    g = torch.Generator().manual_seed(0)
    b, k = 4000, 4
    z = torch.full((b, 2, 3, 3), 2)
    z[:, 0, 1, 2] = torch.randint(0, k, (b,), generator=g)
    hmap = collect(z, k).entropy_map()
    assert hmap.shape == (2, 3, 3)
    assert hmap[0, 1, 2].item() == pytest.approx(math.log(k), abs=0.01)
    hmap[0, 1, 2] = 0.0
    assert torch.equal(hmap, torch.zeros_like(hmap))  # constant codes: 0 everywhere else


def test_entropy_map_averages_to_the_pooled_entropy_only_for_iid_positions():
    # positions differ (each position a different constant): map is 0, pooled entropy is log 4
    z = torch.arange(4).view(1, 1, 2, 2).expand(10, 1, 2, 2)
    stats = collect(z, 4)
    assert stats.entropy_map().abs().max().item() == 0.0
    assert stats.entropies().item() == pytest.approx(math.log(4))


# -- mutual information ----------------------------------------------------------------------


def test_mi_of_independent_codes_is_within_the_bias_bound():
    g = torch.Generator().manual_seed(1)
    n, k = 20_000, 8
    z = torch.randint(0, k, (n // 100, 3, 10, 10), generator=g)
    stats = collect(z, k)
    i, j = torch.triu_indices(3, 3, 1)
    plug_in = stats.mutual_information()[i, j]
    corrected = stats.mutual_information("miller-madow")[i, j]
    bias = mi_bias(k, k, n)
    assert (plug_in > 0).all() and (plug_in < 3 * bias).all()
    # the bound is the plug-in estimator's actual mean, not just a loose ceiling
    assert plug_in.mean().item() == pytest.approx(bias, rel=0.4)
    assert corrected.abs().max() < bias
    assert corrected.abs().mean() < 0.5 * plug_in.mean()


def test_mi_of_identical_or_permuted_codebooks_equals_the_entropy():
    g = torch.Generator().manual_seed(2)
    k = 8
    z0 = torch.randint(0, k, (5000,), generator=g) ** 2 % k  # non-uniform marginal
    mi = collect(codes(z0, z0.clone(), (z0 + 3) % k), k).mutual_information()
    h0 = entropy(torch.bincount(z0, minlength=k)).item()
    assert mi[0, 0].item() == pytest.approx(h0, abs=1e-12)
    assert mi[0, 1].item() == pytest.approx(h0, abs=1e-6)
    assert mi[0, 2].item() == pytest.approx(h0, abs=1e-6)
    assert mi[1, 2].item() == pytest.approx(h0, abs=1e-6)


def test_mi_matrix_is_symmetric_with_entropies_on_the_diagonal():
    g = torch.Generator().manual_seed(3)
    k = 6
    z0 = torch.randint(0, k, (3000,), generator=g)
    noise = torch.randint(0, 2, (3000,), generator=g)
    z = codes(z0, (z0 + noise) % k, torch.randint(0, 3, (3000,), generator=g), z0 // 2)
    stats = collect(z, k)
    for correction in ("none", "miller-madow"):
        mi = stats.mutual_information(correction)
        assert mi.shape == (4, 4)
        assert torch.equal(mi, mi.T)
        assert torch.equal(mi.diagonal(), stats.entropies(correction))
    mi = stats.mutual_information()
    assert mi[0, 1] > 1.0 and mi[0, 3].item() == pytest.approx(math.log(3), abs=0.01)
    assert mi[0, 2] < 0.01 and mi[1, 2] < 0.01
    assert stats.mean_offdiagonal_mi() == pytest.approx(mi[tuple(torch.triu_indices(4, 4, 1))]
                                                        .mean().item())


def test_mi_bias_formula():
    assert mi_bias(8, 8, 20_000) == pytest.approx(49 / 40_000)
    with pytest.raises(ValueError, match="positive"):
        mi_bias(2, 2, 0)


# -- total correlation -----------------------------------------------------------------------


def test_total_correlation_of_independent_codes_is_near_zero():
    g = torch.Generator().manual_seed(4)
    n, k, m = 20_000, 4, 3
    stats = collect(torch.randint(0, k, (n, m, 1, 1), generator=g), k)
    bias = ((k**m - 1) - m * (k - 1)) / (2 * n)  # first-order bias with all bins occupied
    assert 0 < stats.total_correlation() < 3 * bias
    assert abs(stats.total_correlation("miller-madow")) < bias


@pytest.mark.parametrize("m, k", [(3, 8), (14, 32)])  # 32^14 = 2^70: hashed tuple keys
def test_total_correlation_of_identical_codebooks_is_m_minus_one_entropies(m, k):
    g = torch.Generator().manual_seed(5)
    z0 = torch.randint(0, k, (2000,), generator=g)
    stats = collect(codes(*[z0] * m), k, pairwise=False)
    assert stats.hashed == (k**m >= 2**62)
    h = entropy(torch.bincount(z0, minlength=k)).item()
    assert stats.total_correlation() == pytest.approx((m - 1) * h, abs=1e-9)


def test_hashed_keys_count_distinct_tuples_exactly():
    g = torch.Generator().manual_seed(6)
    z = torch.randint(0, 4, (3000, 32, 1, 1), generator=g)  # 4^32 = 2^64 -> hashed
    z[1000:1500] = z[:500]  # some repeated tuples
    stats = collect(z, 4, pairwise=False)
    assert stats.hashed
    distinct = torch.unique(z.flatten(1), dim=0, return_counts=True)[1]
    assert torch.equal(stats.joint_counts.sort().values, distinct.sort().values)


# -- streaming, merging, state ---------------------------------------------------------------


def results(stats: CodeStatistics) -> list:
    return [stats.entropies(), stats.entropy_map(), stats.mutual_information(),
            stats.mutual_information("miller-madow"), stats.total_correlation(),
            stats.total_correlation("miller-madow")]


def assert_same(a: CodeStatistics, b: CodeStatistics) -> None:
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    for x, y in zip(results(a), results(b)):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_streaming_in_batches_equals_one_pass(chunks):
    g = torch.Generator().manual_seed(7)
    z = torch.randint(0, 5, (21, 3, 4, 5), generator=g)
    z[:, 2] = z[:, 0] // 2  # some dependence
    whole = collect(z, 5)
    streamed = CodeStatistics(3, 5)
    for part in torch.tensor_split(z, chunks):
        streamed.update(part)
    assert streamed.num_samples == 21 * 4 * 5
    assert_same(streamed, whole)


def test_merge_and_state_dict_round_trip_equal_one_pass():
    g = torch.Generator().manual_seed(8)
    z = torch.randint(0, 5, (12, 3, 2, 2), generator=g)
    a, b = collect(z[:5], 5), collect(z[5:], 5)
    empty = CodeStatistics(3, 5)
    merged = empty.merge(a).merge(b)
    assert_same(merged, collect(z, 5))
    restored = CodeStatistics(3, 5)
    restored.load_state_dict(merged.state_dict())
    assert_same(restored, merged)
    with pytest.raises(ValueError, match="codebook_size"):
        merged.merge(CodeStatistics(3, 6))


# -- guards and bad input --------------------------------------------------------------------


def test_memory_guards_name_the_switch_to_turn_off():
    with pytest.raises(ValueError, match="pairwise=False"):
        CodeStatistics(8, 1024, max_entries=2**20)
    stats = CodeStatistics(2, 64, max_entries=2**14)  # pairs: 64*64 = 4096, fine
    with pytest.raises(ValueError, match="positions=False"):
        stats.update(torch.zeros(1, 2, 16, 16, dtype=torch.int64))  # 2*16*16*64 = 32768
    off = CodeStatistics(2, 64, positions=False, max_entries=2**14)
    off.update(torch.zeros(1, 2, 16, 16, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="positions=True"):
        off.entropy_map()


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 3, 4, dtype=torch.int64), r"shape \(B, M=3, H, W\), got \(2, 3, 4\)"),
        (torch.zeros(2, 4, 4, 4, dtype=torch.int64), r"M=3.*got \(2, 4, 4, 4\)"),
        (torch.full((2, 3, 4, 4), 5), r"\[0, 5\), got values in \[5, 5\]"),
        (torch.full((2, 3, 4, 4), -1), r"\[0, 5\), got values in \[-1, -1\]"),
        (torch.zeros(2, 3, 4, 4), r"integer.*got dtype torch.float32"),
        (torch.zeros(2, 3, 4, 5, dtype=torch.int64), r"\(4, 4\).*got \(4, 5\)"),
    ],
)
def test_bad_indices_raise_naming_expected_and_got(bad, match):
    stats = CodeStatistics(3, 5)
    stats.update(torch.zeros(1, 3, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=match):
        stats.update(bad)


def test_unknown_correction_raises():
    with pytest.raises(ValueError, match="miller-madow"):
        collect(torch.zeros(1, 2, 1, 1, dtype=torch.int64), 3).entropies("jackknife")
