"""The prior's layout, transformer, KV cache, sampling and configuration."""

from __future__ import annotations

import math

import pytest
import torch

from depthq.models import preset
from depthq.prior import CodeLayout, PriorConfig, PriorModel, load_prior_config
from depthq.evaluate.bits import uniform_rate_bits
from depthq.prior.rates import code_counts, empirical_rate_bits

SMALL = dict(dim=32, layers=2, heads=2)


def layout(size: int = 16) -> CodeLayout:
    return CodeLayout.of(preset("tiny", codebook_sizes=[16, 8]), size)  # grids 8x8 (K=16), 4x4 (K=8)


def random_codes(lay: CodeLayout, n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, k, (n, lay.codebooks, *grid), generator=g)
            for k, grid in zip(lay.codebook_sizes, lay.grids)]


def perturbed(prior: PriorModel, seed: int = 1) -> PriorModel:
    """Random output heads (they start at zero), so the prior is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    for p in prior.heads.parameters():
        p.data = torch.randn(p.shape, generator=g)
    return prior.eval()


def test_layout_orders_levels_top_first_in_raster_order_and_round_trips():
    lay = layout()
    assert lay.grids == ((8, 8), (4, 4)) and lay.codebooks == 2 and lay.total_positions == 80
    codes = random_codes(lay, 3)
    seq = lay.to_sequence(codes)  # (3, 80, 2)
    assert seq.shape == (3, 80, 2)
    assert torch.equal(seq[:, 0], codes[1][:, :, 0, 0])  # the top level's first position
    assert torch.equal(seq[:, 5], codes[1][:, :, 1, 1])  # raster order: row 1, column 1 of 4x4
    assert torch.equal(seq[:, 16 + 9], codes[0][:, :, 1, 1])  # then the bottom level
    assert all(torch.equal(a, b) for a, b in zip(lay.from_sequence(seq), codes))
    assert lay.level_of_position().tolist() == [1] * 16 + [0] * 64
    assert CodeLayout.from_dict(lay.to_dict()) == lay


def test_layout_rejects_codes_of_other_shapes_and_out_of_range():
    lay = layout()
    codes = random_codes(lay, 2)
    with pytest.raises(ValueError, match="expected codes of 2 levels"):
        lay.check(codes[:1])
    with pytest.raises(ValueError, match=r"level 0: expected integer codes \(B, 2, 8, 8\)"):
        lay.check([codes[0][:, :, :4], codes[1]])
    codes[1][0, 0, 0, 0] = 8
    with pytest.raises(ValueError, match=r"level 1: codes must lie in \[0, 8\)"):
        lay.check(codes)


@pytest.mark.parametrize("order", ["joint", "sequential"])
def test_an_untrained_prior_is_uniform(order):
    lay = layout()
    prior = PriorModel(lay, PriorConfig(order=order, **SMALL))
    bits = prior.rate_bits(random_codes(lay, 2))
    assert torch.allclose(bits, torch.full((2,), uniform_rate_bits(lay.level_shapes), dtype=torch.float64), atol=1e-3)
    assert uniform_rate_bits(lay.level_shapes) == 64 * 2 * 4 + 16 * 2 * 3  # positions x M x log2 K


@pytest.mark.parametrize("order", ["joint", "sequential"])
def test_step_by_step_with_the_cache_equals_the_teacher_forced_pass(order):
    lay = layout()
    torch.manual_seed(0)
    prior = perturbed(PriorModel(lay, PriorConfig(order=order, **SMALL)))
    codes = random_codes(lay, 3, seed=2)
    seq = lay.to_sequence(codes)
    steps = seq.view(3, prior.steps, prior.width)
    nats = torch.zeros(3, dtype=torch.float64)

    def teacher(step, logits):  # logits (B, W, K) of this step; feed back the true codes
        assert logits.shape == (3, prior.width, lay.codebook_sizes[prior.step_level(step)])
        nats.sub_(torch.log_softmax(logits.double(), -1).gather(-1, steps[:, step, :, None]).sum((1, 2)))
        return steps[:, step]

    assert torch.equal(prior.generate(3, teacher), seq)
    assert prior.steps == (80 if order == "joint" else 160)
    assert torch.allclose(nats / math.log(2), prior.rate_bits(codes), rtol=1e-5)


def test_sequential_order_conditions_a_code_on_the_codes_of_its_own_position():
    lay = layout()
    torch.manual_seed(0)
    prior = perturbed(PriorModel(lay, PriorConfig(order="sequential", **SMALL)))
    codes = random_codes(lay, 1)
    changed = [z.clone() for z in codes]
    changed[1][0, 0, 0, 0] = (changed[1][0, 0, 0, 0] + 1) % 8  # codebook 0 of the first position

    def first_two(c):
        steps = lay.to_sequence(c).view(1, prior.steps, 1)
        seen = []
        prior.generate(1, lambda s, logits: (seen.append(logits), steps[:, s])[1])
        return seen[1]  # codebook 1 of the first position

    assert not torch.allclose(first_two(codes), first_two(changed))  # it sees codebook 0


def test_samples_are_codes_in_range_and_reproducible():
    lay = layout()
    prior = perturbed(PriorModel(lay, PriorConfig(**SMALL)))
    a = prior.sample(5, generator=torch.Generator().manual_seed(3))
    b = prior.sample(5, generator=torch.Generator().manual_seed(3))
    lay.check(a)
    assert [z.shape for z in a] == [(5, 2, 8, 8), (5, 2, 4, 4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    cold = prior.sample(200, temperature=0.05, generator=torch.Generator().manual_seed(4))
    top = cold[1][:, :, 0, 0]  # the first step: argmax of its logits at a low temperature
    first = prior.step(prior.new_cache(1), None)[0].argmax(-1)  # (W,)
    assert (top == first).float().mean() > 0.95
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, temperature=0.0)


def test_samples_follow_the_prior():
    lay = CodeLayout((4,), 1, ((1, 2),))  # two positions, one codebook of 4 codes: 16 outcomes
    prior = perturbed(PriorModel(lay, PriorConfig(**SMALL)), seed=5)
    drawn = prior.sample(4000, generator=torch.Generator().manual_seed(6))[0].view(4000, 2)
    index = drawn[:, 0] * 4 + drawn[:, 1]
    freq = torch.bincount(index, minlength=16).double() / 4000
    grid = torch.cartesian_prod(torch.arange(4), torch.arange(4)).view(16, 1, 1, 2)
    exact = torch.exp2(-prior.rate_bits([grid]))
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert 0.5 * (freq - exact).abs().sum() < 0.05


def test_rows_of_a_fixed_shape_batch_are_computed_independently():
    # what the codec relies on: a tile's probabilities do not depend on the other rows, computed
    # the codec's way (coder_threads: one thread; with two, a busy CPU's kernels split rows
    # differently and the last bits can change, as a `make test` on a loaded machine showed)
    from depthq.codec.coder import coder_threads

    lay = layout()
    prior = perturbed(PriorModel(lay, PriorConfig(**SMALL)))
    seqs = lay.to_sequence(random_codes(lay, 8, seed=7)).view(8, prior.steps, prior.width)
    order = torch.tensor([5, 3, 0, 7, 1, 6, 2, 4])

    def logits_of(rows):
        out = []
        prior.generate(8, lambda s, logits: (out.append(logits), seqs[rows, s])[1])
        return out  # per step (8, W, K)

    with coder_threads():
        for a, b in zip(logits_of(torch.arange(8)), logits_of(order)):
            assert torch.equal(a[order], b)  # bit for bit


def test_empirical_rate_is_the_add_one_frequency_cost():
    lay = CodeLayout((3,), 2, ((1, 2),))
    train = torch.tensor([[[0, 1], [0, 2]], [[0, 1], [1, 1]]])  # (N=2, T=2, M=2)
    counts = code_counts(train, lay)[0]
    assert counts.tolist() == [[3, 1, 0], [0, 3, 1]]  # codebook 0 saw 0,0,0,1; codebook 1 saw 1,2,1,1
    evaluated = torch.tensor([[[2, 0], [0, 1]]])
    p0 = torch.tensor([4.0, 2.0, 1.0]) / 7  # add-one smoothed
    p1 = torch.tensor([1.0, 4.0, 2.0]) / 7
    expected = -(p0[2].log2() + p1[0].log2() + p0[0].log2() + p1[1].log2())
    assert empirical_rate_bits(train, evaluated, lay).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("overrides, match", [
    (["prior.order=both"], "prior.order must be one of"),
    (["prior.dim=30", "prior.heads=4"], "multiple of prior.heads"),
    (["prior.depth=3"], "unknown key prior.depth"),
    (["train.lr=0"], "train.lr must be a finite number > 0"),
    (["train.steps=2.5"], "train.steps must be of type int"),
    (["model.channels=3"], "unknown section model"),
])
def test_bad_prior_configs_fail_naming_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        load_prior_config(None, overrides)


def test_prior_config_round_trips_through_yaml(tmp_path):
    from depthq.prior.config import dump_prior_config

    config = load_prior_config(None, ["prior.order=sequential", "train.steps=7", "train.lr=3e-4"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_prior_config(config))
    again = load_prior_config(path)
    assert again == config and again.prior.order == "sequential" and again.train.lr == 3e-4
