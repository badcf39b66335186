"""DepthwiseQuantizer's options: the rotation trick, cosine codes and position masks."""

import pytest
import torch
import torch.nn.functional as F

from depthq import DepthwiseQuantizer
from depthq.quantize import rotation_trick

# -- the rotation trick ----------------------------------------------------------------------


def explicit_rotation(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """The paper's formula with R formed: q = sg(|e|/|z| R) z, R = I - 2rr^T + 2u'u^T."""
    u, v = F.normalize(z, dim=-1), F.normalize(e, dim=-1)
    r = F.normalize(u + v, dim=-1)
    eye = torch.eye(z.shape[-1], dtype=z.dtype)
    rot = eye - 2 * r[:, :, None] * r[:, None, :] + 2 * v[:, :, None] * u[:, None, :]  # (N, D, D)
    scale = e.norm(dim=-1) / z.norm(dim=-1)
    return ((scale[:, None, None] * rot).detach() @ z.unsqueeze(-1)).squeeze(-1)


def test_rotation_trick_value_is_the_code_and_gradient_is_the_formulas():
    torch.manual_seed(0)
    z = torch.randn(50, 6, dtype=torch.float64).float().requires_grad_()
    e = torch.randn(50, 6) * 3
    q = rotation_trick(z, e)
    assert torch.equal(q, e)  # the forward value is the code, bit for bit
    upstream = torch.randn(50, 6)
    (ours,) = torch.autograd.grad(q, z, upstream)
    z64 = z.detach().double().requires_grad_()
    ref = explicit_rotation(z64, e.double())
    assert torch.allclose(ref, e.double(), atol=1e-9)  # R takes z to e
    (expected,) = torch.autograd.grad(ref, z64, upstream.double())
    assert torch.allclose(ours.double(), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, upstream, atol=1e-2)  # and it is not straight-through


def test_rotation_trick_degenerate_vectors_fall_back_to_identity_without_nan():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [float("nan"), 1.0], [2.0, 0.0]], requires_grad=True)
    e = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [-3.0, 0.0]])  # z=0, e=0, NaN, opposite
    q = rotation_trick(z, e)
    assert torch.equal(q, e)
    (g,) = torch.autograd.grad(q, z, torch.ones_like(e))
    assert torch.isfinite(g).all()
    assert torch.equal(g[0], torch.ones(2)) and torch.equal(g[1], torch.ones(2)) and torch.equal(g[2], torch.zeros(2))
    # opposite vectors: R = I + 2u'u^T = I - 2uu^T maps u to -u; |e|/|z| = 1.5
    assert torch.allclose(g[3], 1.5 * torch.tensor([-1.0, 1.0]))


def test_dq_with_rotation_trick_keeps_codes_exact_and_commitment_unchanged():
    torch.manual_seed(1)
    st = DepthwiseQuantizer(2, 8, 3, in_channels=5).eval()
    rot = DepthwiseQuantizer(2, 8, 3, in_channels=5, estimator="rotation").eval()
    rot.load_state_dict(st.state_dict())
    x = torch.randn(2, 5, 4, 4, requires_grad=True)
    a, b = st(x), rot(x)
    assert torch.equal(a.quantized, b.quantized) and torch.equal(a.indices, b.indices)
    assert torch.allclose(a.commitment, b.commitment)
    assert torch.equal(rot.decode(b.indices), b.quantized)
    (g,) = torch.autograd.grad(b.quantized.sum(), x)
    # per 3-channel piece (the last one padded to 3 with a zero): the rotation of the real part
    flat = x.detach().permute(0, 2, 3, 1).reshape(-1, 5)
    codes = b.quantized.detach().permute(0, 2, 3, 1).reshape(-1, 5)
    ref = torch.cat([explicit_grad(flat[:, :3], codes[:, :3]), explicit_grad(flat[:, 3:], codes[:, 3:])], 1)
    assert torch.allclose(g.permute(0, 2, 3, 1).reshape(-1, 5), ref, atol=1e-5)


def explicit_grad(z, e):
    z = z.double().requires_grad_()
    (g,) = torch.autograd.grad(explicit_rotation(z, e.double()).sum(), z)
    return g.float()


# -- cosine codes ----------------------------------------------------------------------------


def test_cosine_codes_pick_the_most_similar_code_and_output_it_normalised():
    torch.manual_seed(2)
    dq = DepthwiseQuantizer(2, 16, 4, cosine=True).eval()
    assert torch.allclose(dq.codebooks.norm(dim=-1), torch.ones(2, 16))
    x = torch.randn(3, 8, 5, 5) * 7
    out = dq(x)
    for m in range(2):
        v = x[:, 4 * m : 4 * m + 4].permute(0, 2, 3, 1).reshape(-1, 4)
        expected = (F.normalize(v, dim=-1) @ dq.codebooks[m].T).argmax(-1)
        assert torch.equal(out.indices[:, m].reshape(-1), expected)
    assert torch.allclose(out.quantized.view(3, 2, 4, 5, 5).norm(dim=2), torch.ones(3, 2, 5, 5))
    assert torch.equal(dq.decode(out.indices), out.quantized)
    xn = F.normalize(x.view(3, 2, 4, 5, 5), dim=2).view_as(x)
    assert torch.allclose(out.commitment, ((xn - out.quantized) ** 2).mean())


@pytest.mark.parametrize("learning", ["ema", "gradient"])
def test_cosine_codes_stay_normalised_through_ema_dead_codes_and_kmeans(learning):
    torch.manual_seed(3)
    dq = DepthwiseQuantizer(2, 32, 4, cosine=True, kmeans_init=True, learning=learning).train()
    for _ in range(3):
        out = dq((torch.randn(4, 8, 3, 3) * 5 + 1).requires_grad_())
        (out.quantized.sum() + out.loss).backward()
    assert torch.allclose(dq.codebooks.norm(dim=-1), torch.ones(2, 32), atol=1e-5)
    assert dq.dead_codes().sum() < 64


# -- masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("learning", ["ema", "gradient"])
def test_masked_positions_change_nothing_and_count_nowhere(learning):
    """A masked batch trains exactly as the batch of its unmasked positions would."""
    torch.manual_seed(4)
    ref = DepthwiseQuantizer(2, 8, 3, learning=learning, dead_code_threshold=0.0).train()
    dq = DepthwiseQuantizer(2, 8, 3, learning=learning, dead_code_threshold=0.0).train()
    dq.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 6)  # (B, N, C) sequences
    mask = torch.rand(3, 7) > 0.4
    x_masked = x.clone()
    x_masked[~mask] = float("nan")  # padding may hold anything
    out = dq(x_masked, mask=mask)
    kept = ref(x[mask].view(1, -1, 6))  # the unmasked positions alone, as one sequence
    assert torch.equal(out.counts, kept.counts) and out.nonfinite.tolist() == [0, 0]
    assert torch.allclose(out.perplexity, kept.perplexity) and torch.allclose(out.usage, kept.usage)
    assert torch.allclose(out.commitment, kept.commitment) and torch.allclose(out.loss, kept.loss)
    assert torch.equal(out.indices[mask], kept.indices[0])
    for name, value in ref.state_dict().items():
        assert torch.allclose(dq.state_dict()[name], value, atol=1e-6), name


def test_masked_training_step_gradient_and_fully_masked_batch():
    torch.manual_seed(5)
    dq = DepthwiseQuantizer(2, 8, 3).train()
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    out = dq(x, mask=mask)
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.equal(g[1], torch.zeros_like(g[1])) and g[0, :, :2].abs().sum() > 0  # no loss at padding
    before = {k: v.clone() for k, v in dq.state_dict().items()}
    out = dq(x, mask=torch.zeros(2, 4, 4, dtype=torch.bool))
    assert out.counts.sum() == 0 and out.loss == 0
    for k, v in dq.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_masked_kmeans_and_dead_codes_use_unmasked_vectors_only():
    torch.manual_seed(6)
    dq = DepthwiseQuantizer(1, 4, 2, kmeans_init=True, dead_code_threshold=1.0).train()
    x = torch.randn(2, 30, 2) * 0.1
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[:, 20:] = False
    x[:, 20:] = 1000.0  # far away padding: a code there would show it was used
    dq(x, mask=mask)
    assert bool(dq.initialized) and dq.codebooks.abs().max() < 5
    assert dq.ema_count.sum() == pytest.approx(40)
    for _ in range(3):  # dead codes are re-seeded from unmasked vectors only
        dq(x, mask=mask)
    assert dq.codebooks.abs().max() < 5


def test_spatial_axis_mask_and_bad_masks():
    torch.manual_seed(7)
    dq = DepthwiseQuantizer(3, 8, 2, axis="spatial", in_channels=4).train()
    x = torch.randn(2, 4, 3, 5)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[:, 1] = False  # row 1's codebook sees nothing
    before = dq.embed[1].clone()
    out = dq(x, mask=mask)
    assert out.counts[1].sum() == 0 and out.counts[0].sum() == 2 * 5 * 2
    assert torch.equal(dq.embed[1], before)
    with pytest.raises(ValueError, match=r"\(2, 3, 5\) for an input"):
        dq(x, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        dq(x, mask=torch.ones(2, 3, 5))


def test_a_nonfinite_masked_vector_neither_counts_nor_blocks_the_update():
    torch.manual_seed(8)
    dq = DepthwiseQuantizer(2, 8, 3).train()
    x = torch.randn(4, 6)
    x[0, 1] = float("nan")
    before = dq.ema_count.clone()
    out = dq(x, mask=torch.tensor([False, True, True, True]))
    assert out.nonfinite.tolist() == [0, 0] and not torch.equal(dq.ema_count, before)
    out = dq(x, mask=torch.ones(4, dtype=torch.bool))
    assert out.nonfinite.tolist() == [1, 0]


def test_bad_option_arguments():
    with pytest.raises(ValueError, match="estimator must be one of"):
        DepthwiseQuantizer(2, 8, 3, estimator="gumbel")
    with pytest.raises(TypeError, match="cosine must be a bool"):
        DepthwiseQuantizer(2, 8, 3, cosine=1)
