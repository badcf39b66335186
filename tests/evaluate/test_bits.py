import math

import pytest
import torch

from depthq.evaluate import EmpiricalPrior, LevelShape, UniformPrior, bits_per_dim, uniform_rate_bits
from depthq.evaluate.result import EvalOptions, EvalResult, Likelihood, Rate


def test_bits_per_dim_converts_nats_per_image():
    assert bits_per_dim(3072 * math.log(2), 3072) == pytest.approx(1.0)
    assert bits_per_dim(3072 * math.log(256), 3072) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(1.0, 0)


def test_uniform_rate_is_positions_times_codebooks_times_log2_k():
    levels = [LevelShape(64, 5, 32), LevelShape(16, 5, 32), LevelShape(4, 5, 512)]
    assert uniform_rate_bits(levels) == pytest.approx(64 * 5 * 5 + 16 * 5 * 5 + 4 * 5 * 9)


def test_empirical_prior_matches_hand_computation():
    counts = [torch.tensor([[3.0, 1.0, 0.0]])]  # one level, one codebook, K = 3
    prior = EmpiricalPrior.fit(counts, alpha=1.0)  # smoothed: [4, 2, 1] / 7
    z = torch.tensor([0, 2, 1, 0]).view(1, 1, 2, 2)  # (B=1, M=1, 2, 2)
    expected = -(2 * math.log2(4 / 7) + math.log2(1 / 7) + math.log2(2 / 7))
    assert prior.rate_bits([z]).item() == pytest.approx(expected)
    # a state round trip keeps the prior
    again = EmpiricalPrior.from_state_dict(prior.state_dict())
    assert again.rate_bits([z]).item() == pytest.approx(expected)


def test_empirical_prior_of_uniform_counts_equals_the_uniform_rate():
    counts = [torch.full((2, 8), 100.0), torch.full((2, 4), 7.0)]
    prior = EmpiricalPrior.fit(counts)
    codes = [torch.randint(0, 8, (3, 2, 4, 4)), torch.randint(0, 4, (3, 2, 2, 2))]
    uniform = uniform_rate_bits([LevelShape.of(codes[0], 8), LevelShape.of(codes[1], 4)])
    assert torch.allclose(prior.rate_bits(codes), torch.full((3,), uniform, dtype=torch.float64))


def test_empirical_prior_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        EmpiricalPrior.fit([torch.ones(1, 2)], alpha=0)
    prior = EmpiricalPrior.fit([torch.ones(2, 4)])
    with pytest.raises(ValueError, match=r"expected indices \(B, 2, h, w\)"):
        prior.rate_bits([torch.zeros(1, 3, 2, 2, dtype=torch.long)])
    with pytest.raises(ValueError, match="for 1 levels"):
        prior.rate_bits([])


def _result(distortion_nats: float, dims: int, rates: dict[str, float]) -> EvalResult:
    return EvalResult(images=1, dims=dims, data="x", split="test", precision="32", mse=1.0, psnr=48.1,
                      likelihood=Likelihood(distortion_nats, dims),
                      rates=tuple(Rate(name, f"{name} prior", bits) for name, bits in rates.items()),
                      levels=(), options=EvalOptions())


def test_summary_labels_and_totals():
    s = _result(distortion_nats=3072 * math.log(2) * 3, dims=3072, rates={"uniform": 3072.0, "empirical": 1536.0})
    assert s.distortion == pytest.approx(3.0)
    assert s.total("uniform") == pytest.approx(4.0)
    assert s.total("empirical") == pytest.approx(3.5)
    labels = {f.key: f.label for f in s.figures}
    assert labels["distortion"] == "distortion bits/dim (paper convention)"
    assert labels["total_empirical"] == "total bits/dim, empirical prior"
    assert {f.key: f.prior for f in s.figures}["total_empirical"] == "empirical prior"
    assert "rate_empirical" not in {f.key for f in _result(1.0, 10, {"uniform": 0.0}).figures}


def test_uniform_prior_gives_the_uniform_rate_per_image():
    codes = [torch.randint(0, 8, (3, 2, 4, 4)), torch.randint(0, 4, (3, 2, 2, 2))]
    bits = UniformPrior([8, 4]).rate_bits(codes)
    assert bits.shape == (3,) and torch.all(bits == 16 * 2 * 3 + 4 * 2 * 2)
