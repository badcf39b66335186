"""depthq's quantizers against vector-quantize-pytorch (vqp) 1.32.0 where the definitions coincide.

Where they differ, by design, the test says so: FSQ's even levels (ours symmetric, spec section
8), LFQ's bit order (ours: index = sum_i 2^i [z_i > 0], vqp: the first dimension most
significant) and its grouped entropies (ours summed over groups, vqp's averaged), and residual
VQ's gradient (ours one straight-through estimator on the sum, vqp's one per stage).
"""

import pytest
import torch

vqp = pytest.importorskip("vector_quantize_pytorch")

from depthq.quantize import (  # noqa: E402
    DepthwiseQuantizer,
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    ResidualQuantizer,
    rotation_trick,
)


def away_from_edges(z: torch.Tensor, levels, margin: float) -> torch.Tensor:
    """(N,) positions whose every h tanh(z_i) is further than ``margin`` from a cell edge."""
    h = torch.tensor([lv // 2 for lv in levels], dtype=torch.float64)
    y = h * torch.tanh(z.double())
    return ((y - y.floor() - 0.5).abs() > margin).all(-1)


# -- FSQ ---------------------------------------------------------------------------------------


def test_fsq_odd_levels_equal_vqps_symmetry_preserving_fsq():
    levels = [7, 5, 5, 3]
    ours = FiniteScalarQuantizer(levels).eval()
    theirs = vqp.FSQ(levels=levels, preserve_symmetry=True).eval()
    torch.manual_seed(0)
    z = torch.randn(4, 500, 4) * 1.5  # (B, N, d)
    out = ours(z)
    q, idx = theirs(z)
    keep = away_from_edges(z.view(-1, 4), levels, 1e-4).view(4, 500)  # rounding-order ties only
    assert keep.float().mean() > 0.99
    assert torch.equal(ours.pack_indices(out.indices)[..., 0][keep], idx[keep].long())
    assert torch.allclose(out.quantized[keep], q[keep], atol=1e-6)
    assert torch.allclose(ours.implicit_codebook(), theirs.implicit_codebook, atol=1e-6)


def test_fsq_odd_levels_equal_vqps_default_fsq_off_its_eps_margin():
    """vqp's default bound scales tanh by h (1 + 1e-3): the same cells except within 0.1% of h
    of an edge."""
    levels = [5, 5, 3]
    ours, theirs = FiniteScalarQuantizer(levels).eval(), vqp.FSQ(levels=levels).eval()
    torch.manual_seed(1)
    z = torch.randn(2, 3, 20, 20)  # (B, d, H, W) maps
    out = ours(z)
    q, idx = theirs(z)
    keep = away_from_edges(z.permute(0, 2, 3, 1).reshape(-1, 3), levels, 0.01).view(2, 20, 20)
    assert torch.equal(ours.pack_indices(out.indices)[:, 0][keep], idx[keep].long())
    assert torch.allclose(out.quantized.permute(0, 2, 3, 1)[keep], q.permute(0, 2, 3, 1)[keep], atol=1e-6)


def test_fsq_even_levels_differ_from_vqp_by_design():
    """Ours: L = 4 gives -3/4, -1/4, 1/4, 3/4 (symmetric); vqp's default: -1, -1/2, 0, 1/2."""
    z = torch.linspace(-5, 5, 1001).view(1, -1, 1)
    ours = sorted(set(FiniteScalarQuantizer([4])(z).quantized.view(-1).tolist()))
    theirs = sorted(set(vqp.FSQ(levels=[4])(z)[0].view(-1).tolist()))
    assert ours == [-0.75, -0.25, 0.25, 0.75] and theirs == [-1.0, -0.5, 0.0, 0.5]


# -- LFQ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2])
def test_lfq_signs_indices_and_entropy_terms_equal_vqps(groups):
    dim, g = 8, 8 // groups
    torch.manual_seed(2)
    ours = LookupFreeQuantizer(dim, group_size=g, temperature=1.0, diversity_gamma=1.0).train()
    theirs = vqp.LFQ(dim=dim, codebook_size=2**g, num_codebooks=groups, entropy_loss_weight=0.1,
                     commitment_loss_weight=0.25, diversity_gamma=1.0).train()  # fmt: skip
    x = torch.randn(3, 40, dim) * 0.5  # (B, N, d)
    out = ours(x)
    (q, idx, aux), (per_sample, batch, commit) = theirs(x, inv_temperature=1.0, return_loss_breakdown=True)
    assert torch.allclose(out.quantized, q, atol=1e-6)
    idx = idx.view(3, 40, groups)
    reversed_bits = sum(((idx >> (g - 1 - j)) & 1) << j for j in range(g))  # vqp: first bit most significant
    assert torch.equal(out.indices, reversed_bits)
    # vqp averages the per-group entropies; ours sums them (the entropy over all 2^d codes when G = 1)
    assert out.per_sample_entropy.item() == pytest.approx(groups * per_sample.item(), rel=1e-4, abs=1e-5)
    assert out.batch_entropy.item() == pytest.approx(groups * batch.item(), rel=1e-5)
    assert out.commitment.item() == pytest.approx(commit.item(), rel=1e-6)
    if groups == 1:  # (vqp clamps probabilities at 1e-5 inside its logs: a few 1e-6 apart)
        assert out.loss.item() == pytest.approx(aux.item(), rel=1e-4, abs=3e-5)


# -- residual VQ -------------------------------------------------------------------------------


def residual_pair(stages: int, k: int, d: int, **kwargs):
    torch.manual_seed(3)
    ours = ResidualQuantizer.vq(stages, k, d, dead_code_threshold=0.0, decay=0.9)
    theirs = vqp.ResidualVQ(dim=d, num_quantizers=stages, codebook_size=k, decay=0.9, rotation_trick=False,
                            threshold_ema_dead_code=0, commitment_weight=1.0, **kwargs)  # fmt: skip
    with torch.no_grad():
        for stage, layer in zip(ours.stages, theirs.layers):
            layer._codebook.embed.copy_(stage.embed)
            layer._codebook.embed_avg.copy_(stage.ema_sum)
            layer._codebook.cluster_size.copy_(stage.ema_count)  # both start at ones
    return ours, theirs


def test_residual_vq_equals_vqps_residual_vq_in_eval():
    ours, theirs = residual_pair(3, 16, 6)
    ours.eval(), theirs.eval()
    x = torch.randn(4, 30, 6)
    out = ours(x)
    q, idx, _ = theirs(x)
    assert torch.equal(out.indices, idx)
    assert torch.allclose(out.quantized, q, atol=1e-6)


def test_a_masked_residual_training_step_moves_every_stage_as_vqps():
    ours, theirs = residual_pair(2, 8, 4)
    ours.train(), theirs.train()
    x = torch.randn(3, 20, 4)
    mask = torch.rand(3, 20) > 0.3
    out = ours(x, mask=mask)
    _, idx, losses = theirs(x, mask=mask)
    assert torch.equal(out.indices[mask], idx[mask])
    for stage, layer in zip(ours.stages, theirs.layers):
        assert torch.allclose(stage.ema_count, layer._codebook.cluster_size, atol=1e-6)
        assert torch.allclose(stage.embed, layer._codebook.embed, atol=1e-6)
    # vqp's per-layer commitment ||r_{s-1} - sg(q_s)||^2 over unmasked positions is our stage term
    assert torch.allclose(out.stage_commitment, losses.view(-1), atol=1e-6)


def test_residual_gradient_one_estimator_on_the_sum_where_vqp_passes_one_per_stage():
    ours, theirs = residual_pair(3, 8, 4)
    ours.train(), theirs.train()
    x = torch.randn(2, 10, 4, requires_grad=True)
    (g_ours,) = torch.autograd.grad(ours(x).quantized.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs(x)[0].sum(), x)
    assert torch.equal(g_ours, torch.ones_like(x))
    assert torch.allclose(g_theirs, 3 * torch.ones_like(x))  # S copies of the straight-through gradient


def test_residual_dq_equals_vqps_grouped_residual_vq():
    torch.manual_seed(4)
    ours = ResidualQuantizer(2, 16, 3, num_codebooks=2).eval()
    theirs = vqp.GroupedResidualVQ(dim=6, groups=2, num_quantizers=2, codebook_size=16, rotation_trick=False).eval()
    with torch.no_grad():
        for s, stage in enumerate(ours.stages):
            for m in range(2):
                theirs.rvqs[m].layers[s]._codebook.embed.copy_(stage.embed[m : m + 1])
    x = torch.randn(3, 12, 6)
    out = ours(x)
    q, idx, _ = theirs(x)  # idx: (groups, B, N, stages)
    assert torch.allclose(out.quantized, q, atol=1e-6)
    assert torch.equal(out.indices.view(3, 12, 2, 2).permute(3, 0, 1, 2), idx)  # ours: stage-major


# -- DQ options --------------------------------------------------------------------------------


def test_rotation_trick_gradient_equals_vqps_rotate_to():
    from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to

    torch.manual_seed(5)
    z = torch.randn(64, 8, requires_grad=True)
    e = torch.randn(64, 8)
    up = torch.randn(64, 8)
    (ours,) = torch.autograd.grad(rotation_trick(z, e), z, up)
    theirs_q = rotate_to(z, e)
    (theirs,) = torch.autograd.grad(theirs_q, z, up)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert torch.allclose(theirs_q, e, atol=1e-4) and torch.equal(rotation_trick(z, e), e)  # ours exactly


def test_cosine_codes_equal_vqps_cosine_sim_codebook():
    torch.manual_seed(6)
    ours = DepthwiseQuantizer.vq(32, 6, cosine=True).eval()
    theirs = vqp.VectorQuantize(dim=6, codebook_size=32, use_cosine_sim=True, rotation_trick=False).eval()
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.embed)
    x = torch.randn(2, 50, 6) * 4
    out = ours(x)
    q, idx, _ = theirs(x)
    assert torch.equal(out.indices[..., 0], idx)
    assert torch.allclose(out.quantized, q, atol=1e-6)


def test_a_masked_vq_ema_step_equals_vqps():
    """(vqp 1.32 cannot take a mask with several heads: its mask does not broadcast there.)"""
    torch.manual_seed(7)
    ours = DepthwiseQuantizer.vq(8, 3, decay=0.8, dead_code_threshold=0.0).train()
    theirs = vqp.VectorQuantize(dim=3, codebook_size=8, decay=0.8, rotation_trick=False, threshold_ema_dead_code=0)
    theirs.train()
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.embed)
        theirs._codebook.embed_avg.copy_(ours.ema_sum)
    x = torch.randn(4, 9, 3)
    mask = torch.rand(4, 9) > 0.4
    out = ours(x, mask=mask)
    _, idx, _ = theirs(x, mask=mask)
    assert torch.equal(out.indices[..., 0][mask], idx[mask])
    assert torch.allclose(ours.ema_count, theirs._codebook.cluster_size, atol=1e-6)
    assert torch.allclose(ours.embed, theirs._codebook.embed, atol=1e-6)
