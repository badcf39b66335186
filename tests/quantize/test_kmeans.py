"""k-means++ seeding and Lloyd's iterations (one process; two ranks: test_distributed.py)."""

import pytest
import torch

from depthq import DepthwiseQuantizer
from depthq.quantize.kmeans import kmeans, kmeans_plus_plus, shared_seed_sample

CENTERS = torch.tensor([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])


def three_clusters(seed: int, sizes=(100, 100, 100), labels: bool = False):
    """(N, 2) points scattered by 0.1 around the three CENTERS, 14 or more apart."""
    g = torch.Generator().manual_seed(seed)
    which = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    x = CENTERS[which] + 0.1 * torch.randn(len(which), 2, generator=g)
    return (x, which) if labels else x


@pytest.mark.parametrize("sizes", [(100, 100, 100), (250, 40, 10)])
def test_kmeans_init_puts_one_code_on_each_of_three_separated_clusters(sizes):
    # random seeding lands two of three codes on one cluster for most seeds (all three on
    # distinct clusters has probability 2/9 with equal clusters), and Lloyd cannot recover
    for seed in range(12):
        torch.manual_seed(seed)
        x, which = three_clusters(seed, sizes, labels=True)
        dq = DepthwiseQuantizer(1, 3, 2, kmeans_init=True, dead_code_threshold=0).train()
        dq(x)
        nearest_center = torch.cdist(dq.codebooks[0], CENTERS).argmin(-1)  # (3,)
        assert sorted(nearest_center.tolist()) == [0, 1, 2], f"seed {seed}: {dq.codebooks[0]}"
        # each code is its cluster's mean (Lloyd converged), and counts are the cluster sizes
        means = torch.stack([x[which == c].mean(0) for c in nearest_center.tolist()])
        assert torch.allclose(dq.codebooks[0], means, atol=1e-5)
        assert dq.ema_count[0].tolist() == [float(sizes[c]) for c in nearest_center.tolist()]


def test_kmeans_plus_plus_vectorised_over_codebooks():
    # codebook 0 sees the clusters as they are, codebook 1 shifted by 100: each gets its own
    torch.manual_seed(0)
    x = torch.stack([three_clusters(0), three_clusters(1) + 100])  # (2, 300, 2)
    centroids, counts = kmeans(x, 3, iters=5)
    for m, shift in enumerate((0.0, 100.0)):
        got = centroids[m][centroids[m][:, 0].argsort()]
        assert torch.allclose(got, CENTERS + shift, atol=0.05)
    assert counts.tolist() == [[100.0] * 3] * 2


def test_seeding_is_a_function_of_the_sample_and_the_uniforms():
    torch.manual_seed(1)
    samples, weights, uniforms = shared_seed_sample(three_clusters(1).unsqueeze(0), 64, 3)
    assert samples.shape == (1, 64, 2) and weights.shape == (64,) and uniforms.shape == (1, 3)
    assert torch.allclose(weights, torch.full((64,), 300 / 64))  # each row stands for N / S
    a = kmeans_plus_plus(samples, weights, uniforms)
    b = kmeans_plus_plus(samples.clone(), weights.clone(), uniforms.clone())
    assert torch.equal(a, b)
    # every seed is one of the samples
    assert (a[0][:, None] == samples[0][None]).all(-1).any(-1).all()


def test_rows_of_zero_weight_are_never_seeds():
    # an empty rank's rows come as zeros with weight 0: they must not become codes
    samples = torch.cat([torch.zeros(1, 8, 2), torch.randn(1, 8, 2) + 5], 1)  # (1, 16, 2)
    weights = torch.cat([torch.zeros(8), torch.ones(8)])
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        seeds = kmeans_plus_plus(samples, weights, torch.rand(1, 6, generator=g))
        assert (seeds[0].norm(dim=-1) > 1).all()


def test_fewer_distinct_vectors_than_codes_still_seeds():
    samples = torch.tensor([[[1.0, 1.0]] * 4 + [[2.0, 2.0]] * 4])  # 2 distinct vectors, K = 5
    seeds = kmeans_plus_plus(samples, torch.ones(8), torch.rand(1, 5))
    assert torch.isfinite(seeds).all()
    assert {tuple(s) for s in seeds[0].tolist()} == {(1.0, 1.0), (2.0, 2.0)}


def test_the_first_seed_is_drawn_by_weight_and_zero_weights_are_skipped():
    samples = torch.tensor([[[float(i), 0.0] for i in range(5)]])  # sample i sits at (i, 0)
    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0])  # cumulative 0, 1, 1, 4, 4
    for u, expected in [(0.0, 1), (0.2, 1), (0.2499, 1), (0.25, 3), (0.9, 3), (0.999999, 3)]:
        seed = kmeans_plus_plus(samples, weights, torch.tensor([[u]]))
        assert seed[0, 0, 0].item() == expected, u


def test_later_seeds_are_drawn_by_weighted_squared_distance():
    # samples at 0, 1 and 3 on a line, equal weights; seed 0 at 0: masses 0, 1, 9 (cum 0, 1, 10)
    samples = torch.tensor([[[0.0], [1.0], [3.0]]])
    weights = torch.ones(3)
    for u, expected in [(0.05, 1.0), (0.0999, 1.0), (0.1, 3.0), (0.95, 3.0)]:
        seeds = kmeans_plus_plus(samples, weights, torch.tensor([[0.0, u]]))
        assert seeds[0, :, 0].tolist() == [0.0, expected], u
