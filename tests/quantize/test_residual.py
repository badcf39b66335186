"""ResidualQuantizer: the residual recursion by hand, one estimator on the sum, dropout."""

import copy

import pytest
import torch

from depthq import DepthwiseQuantizer
from depthq.quantize import ResidualQuantizer
from depthq.quantize.residual import prefix_length


def nearest(v: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return torch.cdist(v.double(), codes.double()).argmin(-1)


def test_stages_quantize_the_residuals_and_the_output_is_their_sum():
    """r_0 = z, q_s = nearest code of r_{s-1} in codebook s, r_s = r_{s-1} - q_s, by hand."""
    torch.manual_seed(0)
    rq = ResidualQuantizer.vq(3, (16, 8, 4), 5).eval()
    x = torch.randn(40, 5)
    out = rq(x)
    residual, total = x.clone(), torch.zeros_like(x)
    for s, codes in enumerate(rq.codebooks):
        idx = nearest(residual, codes[0])
        assert torch.equal(out.indices[:, s], idx)
        residual = residual - codes[0][idx]
        total = total + codes[0][idx]
    assert torch.equal(out.quantized, total)
    assert torch.equal(rq.decode(out.indices), out.quantized)
    assert rq.alphabet_sizes == (16, 8, 4) and rq.bits_per_position == 9
    assert out.counts.shape == (3, 16) and out.counts[2, 4:].sum() == 0
    assert out.usage[2] == (out.counts[2] > 0).sum() / 4


def test_one_straight_through_estimator_on_the_sum_and_rq_vae_commitment():
    torch.manual_seed(1)
    rq = ResidualQuantizer(3, 8, 2, num_codebooks=2, beta=0.5).train()
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    before = copy.deepcopy(rq)  # the codebooks the step searched (training updates them after)
    out = rq(x)
    upstream = torch.randn_like(x)
    (g,) = torch.autograd.grad(out.quantized, x, upstream, retain_graph=True)
    assert torch.equal(g, upstream)  # once, not S times
    # stage s: mean ||z - sg(q_1 + ... + q_s)||^2, from the stages' codes
    codes = [before.stages[s].decode(out.indices[:, 2 * s : 2 * s + 2]) for s in range(3)]
    partial = torch.cumsum(torch.stack(codes), 0)
    expected = ((x.detach() - partial) ** 2).mean((1, 2, 3, 4))
    assert torch.allclose(out.stage_commitment, expected)
    assert torch.allclose(out.loss, 0.5 * expected.sum())
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.allclose(g, 0.5 * 2 * (3 * x.detach() - partial.sum(0)) / x.numel(), atol=1e-7)


def test_residual_dq_equals_m_residual_vqs_side_by_side():
    torch.manual_seed(2)
    rdq = ResidualQuantizer(2, 8, 3, num_codebooks=2).eval()
    x = torch.randn(3, 6, 4, 4)
    out = rdq(x)
    for m in range(2):
        vq = ResidualQuantizer.vq(2, 8, 3).eval()
        for s in range(2):
            vq.stages[s].embed.copy_(rdq.stages[s].embed[m : m + 1])
        part = vq(x[:, 3 * m : 3 * m + 3])
        assert torch.equal(part.quantized, out.quantized[:, 3 * m : 3 * m + 3])
        assert torch.equal(part.indices, out.indices[:, [m, 2 + m]])


def test_every_stage_keeps_its_own_ema_and_dead_codes():
    torch.manual_seed(3)
    rq = ResidualQuantizer.vq(2, 16, 2, decay=0.5, dead_code_threshold=1.0).train()
    before = [s.embed.clone() for s in rq.stages]
    with torch.no_grad():
        rq.stages[1].embed[0, 3] = 1e4  # unreachable in stage 2: dead, re-seeded from the residuals
        rq.stages[1].ema_count[0, 3] = 0.0
    x = torch.randn(64, 2) * 3
    rq(x)
    assert not torch.equal(rq.stages[0].embed, before[0]) and not torch.equal(rq.stages[1].embed, before[1])
    assert rq.stages[1].embed[0, 3].abs().max() < 100  # moved onto a residual vector
    rq.eval()
    state = {k: v.clone() for k, v in rq.state_dict().items()}
    rq(x)
    assert all(torch.equal(v, state[k]) for k, v in rq.state_dict().items())


def test_quantizer_dropout_uses_a_prefix_and_dropped_stages_do_nothing():
    torch.manual_seed(4)
    rq = ResidualQuantizer.vq(4, 8, 3, dropout=True, dropout_min_stages=2).train()
    seen = set()
    for _ in range(40):
        embeds = [s.embed.clone() for s in rq.stages]
        searched = copy.deepcopy(rq)  # the codebooks of this step (it updates them after)
        x = torch.randn(32, 3)
        out = rq(x)
        used = (out.indices[0] >= 0).tolist()
        n = sum(used)
        assert used == [True] * n + [False] * (4 - n) and n >= 2  # a prefix of at least two stages
        assert (out.indices[:, n:] == -1).all() and (out.indices[:, :n] >= 0).all()
        assert out.counts[n:].sum() == 0 and (out.stage_commitment[n:] == 0).all()
        for s in range(n, 4):
            assert torch.equal(rq.stages[s].embed, embeds[s])  # no update for a dropped stage
        # quantized is the sum of the used stages only; decode reads -1 as "no code"
        assert torch.equal(searched.decode(out.indices), out.quantized)
        seen.add(n)
    assert seen == {2, 3, 4}
    assert int(rq.dropout_step) == 40
    rq.eval()
    assert (rq(torch.randn(5, 3)).indices >= 0).all()  # no dropout in eval


def test_dropout_sequence_is_seeded_and_survives_a_state_dict():
    steps = torch.arange(200)
    a = prefix_length(steps, 0, 1, 8)
    assert torch.equal(a, prefix_length(steps, 0, 1, 8)) and not torch.equal(a, prefix_length(steps, 1, 1, 8))
    counts = torch.bincount(a, minlength=9)[1:]
    assert (counts > 10).all()  # roughly uniform over 1..8 (25 expected each)
    rq = ResidualQuantizer.vq(3, 4, 2, dropout=True).train()
    for _ in range(5):
        rq(torch.randn(4, 2))
    copy = ResidualQuantizer.vq(3, 4, 2, dropout=True).train()
    copy.load_state_dict(rq.state_dict())
    x = torch.randn(4, 2)
    assert torch.equal(rq(x).indices >= 0, copy(x).indices >= 0)


def test_decode_of_a_prefix_is_the_coarse_reconstruction():
    torch.manual_seed(5)
    rq = ResidualQuantizer(3, 16, 2, num_codebooks=2).eval()
    x = torch.randn(2, 5, 4)
    out = rq(x)
    coarse = out.indices.clone()
    coarse[..., 2:] = -1  # keep stage 1 only
    assert torch.equal(rq.decode(coarse), rq.stages[0].decode(out.indices[..., :2]))
    with pytest.raises(ValueError, match="expected 6 codes per position"):
        rq.decode(out.indices[..., :4])
    with pytest.raises(ValueError, match="-1"):
        rq.decode(out.indices - 5)


def test_rotation_trick_on_the_sum_keeps_the_value_exact():
    torch.manual_seed(6)
    st = ResidualQuantizer.vq(2, 8, 4).train()
    rot = ResidualQuantizer.vq(2, 8, 4, estimator="rotation").train()
    rot.load_state_dict(st.state_dict())
    x = torch.randn(10, 4, requires_grad=True)
    a, b = st(x), rot(x)
    assert torch.equal(a.quantized, b.quantized) and torch.allclose(a.loss, b.loss)
    (g,) = torch.autograd.grad(b.quantized.sum(), x)
    assert not torch.allclose(g, torch.ones_like(g))


def test_nonfinite_vectors_and_masks_reach_every_stage():
    torch.manual_seed(7)
    rq = ResidualQuantizer.vq(2, 8, 3).train()
    before = {k: v.clone() for k, v in rq.state_dict().items()}
    x = torch.randn(2, 4, 3)
    x[1, 2, 0] = float("nan")
    out = rq(x)
    assert out.nonfinite.tolist() == [1, 1] and out.indices[1, 2].tolist() == [0, 0]
    assert all(torch.equal(v, before[k]) for k, v in rq.state_dict().items())  # no stage updated
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False
    out = rq(x, mask=mask)
    assert out.nonfinite.tolist() == [0, 0] and out.counts.sum(-1).tolist() == [7.0, 7.0]
    assert not torch.equal(rq.stages[1].ema_count, before["stages.1.ema_count"])


@pytest.mark.parametrize("kwargs, match", [
    ({"num_stages": 0}, "num_stages"),
    ({"codebook_size": (8, 8)}, "one per stage"),
    ({"dropout_min_stages": 4}, r"\[1, 3\]"),
    ({"estimator": "ste"}, "estimator must be one of"),
    ({"decay": 2.0}, "decay"),
])
def test_bad_arguments(kwargs, match):
    args = {"num_stages": 3, "codebook_size": 8, "code_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        ResidualQuantizer(**args)


def test_stage_is_a_depthwise_quantizer():
    rq = ResidualQuantizer(2, 8, 3, num_codebooks=2, in_channels=5)
    assert all(isinstance(s, DepthwiseQuantizer) for s in rq.stages)
    assert rq.in_channels == rq.out_channels == 5
