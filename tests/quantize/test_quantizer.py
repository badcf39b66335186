"""Behaviour of DepthwiseQuantizer against brute force and hand computation."""

import math

import pytest
import torch
import torch.nn.functional as F

from depthq import DepthwiseQuantizer


def nearest(vectors: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Brute-force nearest code: (N, D), (K, D) -> (N,)."""
    return torch.cdist(vectors.double(), codes.double()).argmin(-1)


# -- nearest codes, layouts ------------------------------------------------------------------


def test_channel_map_every_vector_gets_its_nearest_code():
    torch.manual_seed(0)
    dq = DepthwiseQuantizer(3, 11, 4).eval()
    x = torch.randn(2, 12, 5, 6)
    out = dq(x)
    assert out.indices.shape == (2, 3, 5, 6) and out.indices.dtype == torch.int64
    for m in range(3):
        vectors = x[:, 4 * m : 4 * (m + 1)].permute(0, 2, 3, 1).reshape(-1, 4)
        expected = nearest(vectors, dq.codebooks[m]).view(2, 5, 6)
        assert torch.equal(out.indices[:, m], expected)
        # the output slice holds those codes at every position
        q = out.quantized[:, 4 * m : 4 * (m + 1)].permute(0, 2, 3, 1)
        assert torch.equal(q, dq.codebooks[m][expected])


def test_spatial_axis_gives_each_row_its_own_codebook():
    torch.manual_seed(1)
    rows, d = 4, 3
    dq = DepthwiseQuantizer(rows, 9, d, axis="spatial", in_channels=7).eval()  # 7 -> 9 padded
    x = torch.randn(2, 7, rows, 5)
    out = dq(x)
    assert out.indices.shape == (2, 3, rows, 5)  # (B, P, H, W): P = ceil(7/3) pieces
    padded = F.pad(x, (0, 0, 0, 0, 0, 2))  # (2, 9, rows, 5)
    for h in range(rows):
        for p in range(3):
            vectors = padded[:, 3 * p : 3 * (p + 1), h, :].permute(0, 2, 1).reshape(-1, d)
            expected = nearest(vectors, dq.codebooks[h]).view(2, 5)
            assert torch.equal(out.indices[:, p, h, :], expected)
    assert out.quantized.shape == x.shape


def test_sequences_and_vectors():
    torch.manual_seed(2)
    dq = DepthwiseQuantizer(4, 8, 2).eval()
    seq = torch.randn(3, 5, 8)
    out = dq(seq)
    assert out.indices.shape == (3, 5, 4)
    for m in range(4):
        v = seq[..., 2 * m : 2 * m + 2].reshape(-1, 2)
        assert torch.equal(out.indices[..., m].reshape(-1), nearest(v, dq.codebooks[m]))
    vec = torch.randn(6, 8)
    out = dq(vec)
    assert out.indices.shape == (6, 4)
    for m in range(4):
        assert torch.equal(out.indices[:, m], nearest(vec[:, 2 * m : 2 * m + 2], dq.codebooks[m]))


def test_product_preset_pads_the_last_subvector():
    torch.manual_seed(3)
    pq = DepthwiseQuantizer.product(dim=10, num_subvectors=3, codebook_size=5).eval()
    assert pq.code_dim == 4 and pq.in_channels == 10
    x = torch.randn(7, 10)
    out = pq(x)
    assert out.quantized.shape == (7, 10)
    last = F.pad(x[:, 8:], (0, 2))  # channels 8, 9 plus two zeros
    assert torch.equal(out.indices[:, 2], nearest(last, pq.codebooks[2]))
    assert torch.equal(out.quantized[:, 8:], pq.codebooks[2][out.indices[:, 2]][:, :2])


def test_m1_equals_plain_vq():
    torch.manual_seed(4)
    vq = DepthwiseQuantizer.vq(codebook_size=16, code_dim=6).eval()
    x = torch.randn(3, 6, 4, 4)
    out = vq(x)
    flat = x.permute(0, 2, 3, 1).reshape(-1, 6)
    dist = (flat**2).sum(1, keepdim=True) - 2 * flat @ vq.codebooks[0].T + (vq.codebooks[0] ** 2).sum(1)
    idx = dist.argmin(1)
    expected = vq.codebooks[0][idx].view(3, 4, 4, 6).permute(0, 3, 1, 2)
    assert torch.equal(out.indices.view(-1), idx)
    assert torch.equal(out.quantized, expected)
    assert torch.allclose(out.commitment, ((x - expected) ** 2).mean())


def test_d1_is_a_scalar_quantizer_per_channel():
    torch.manual_seed(5)
    sq = DepthwiseQuantizer.scalar(channels=3, num_values=4).eval()
    x = torch.randn(2, 3, 5, 5)
    out = sq(x)
    for c in range(3):
        levels = sq.codebooks[c, :, 0]  # (4,)
        expected = (x[:, c, :, :, None] - levels).abs().argmin(-1)
        assert torch.equal(out.indices[:, c], expected)
        assert torch.equal(out.quantized[:, c], levels[expected])


def test_coupled_baseline_quantizes_one_input_with_every_codebook():
    torch.manual_seed(6)
    cq = DepthwiseQuantizer.coupled_baseline(3, 8, 4).eval()
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = cq(x)
    assert out.quantized.shape == (2, 12, 3, 3)
    vectors = x.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    for m in range(3):
        assert torch.equal(out.indices[:, m].reshape(-1), nearest(vectors, cq.codebooks[m]))
    # the straight-through gradient sums over the three copies
    w = torch.randn_like(out.quantized)
    (x_grad,) = torch.autograd.grad((out.quantized * w).sum(), x)
    assert torch.allclose(x_grad, w.view(2, 3, 4, 3, 3).sum(1))


@pytest.mark.parametrize("chunk", [1, 50, None])
def test_chunk_size_does_not_change_the_result(chunk):
    torch.manual_seed(7)
    x = torch.randn(4, 8, 6, 6)
    ref = DepthwiseQuantizer(2, 13, 4).eval()
    dq = DepthwiseQuantizer(2, 13, 4, chunk_elements=chunk).eval()
    dq.load_state_dict(ref.state_dict())
    assert torch.equal(dq(x).indices, ref(x).indices)


# -- gradients and losses --------------------------------------------------------------------


def test_straight_through_gradient_is_identity():
    torch.manual_seed(8)
    dq = DepthwiseQuantizer(2, 8, 3).train()
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    out = dq(x)
    upstream = torch.randn_like(out.quantized)
    (grad,) = torch.autograd.grad(out.quantized, x, upstream)
    assert torch.equal(grad, upstream)


def test_commitment_gradient_is_two_beta_x_minus_q_over_n():
    torch.manual_seed(9)
    dq = DepthwiseQuantizer(2, 8, 3, beta=0.25).eval()
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    out = dq(x)
    (grad,) = torch.autograd.grad(out.loss, x)
    q = out.quantized.detach()
    assert torch.allclose(out.commitment, ((x.detach() - q) ** 2).mean())
    assert torch.allclose(grad, 2 * 0.25 * (x.detach() - q) / x.numel())
    assert out.codebook_loss.item() == 0.0


def test_gradient_learning_trains_codebooks_by_gradient():
    torch.manual_seed(10)
    dq = DepthwiseQuantizer(2, 8, 3, learning="gradient", dead_code_threshold=0).train()
    assert isinstance(dq.embed, torch.nn.Parameter)
    x = torch.randn(4, 6, 3, 3)
    out = dq(x)
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment)
    out.loss.backward()
    assert dq.embed.grad is not None and dq.embed.grad.abs().sum() > 0
    # the codebook gradient of mean ||sg(x) - q||^2 for a used code: 2 (e - mean of its x) n_k / n
    flat = x.view(4, 2, 3, 3, 3).permute(1, 0, 3, 4, 2).reshape(2, -1, 3)
    idx = out.indices.permute(1, 0, 2, 3).reshape(2, -1)
    m, k = 0, int(idx[0, 0])
    members = flat[m][idx[m] == k]
    expected = 2 * (dq.embed[m, k].detach() - members.mean(0)) * len(members) / flat.numel()
    assert torch.allclose(dq.embed.grad[m, k], expected, atol=1e-6)


# -- EMA, eval, dead codes -------------------------------------------------------------------


def test_ema_matches_hand_computation():
    dq = DepthwiseQuantizer(1, 2, 1, decay=0.9, eps=1e-5, dead_code_threshold=0).train()
    with torch.no_grad():
        dq.embed.copy_(torch.tensor([[[0.0], [10.0]]]))
        dq.ema_sum.copy_(dq.embed)
        dq.ema_count.fill_(1.0)
    x = torch.tensor([[1.0], [2.0], [9.0]])  # (B=3, C=1): codes 0, 0, 1
    out = dq(x)
    assert out.indices.view(-1).tolist() == [0, 0, 1]
    # N <- 0.9 N + 0.1 n ; S <- 0.9 S + 0.1 s
    n_ema = [0.9 * 1 + 0.1 * 2, 0.9 * 1 + 0.1 * 1]
    s_ema = [0.9 * 0 + 0.1 * 3.0, 0.9 * 10 + 0.1 * 9.0]
    total = sum(n_ema)
    smoothed = [(c + 1e-5) / (total + 2 * 1e-5) * total for c in n_ema]
    assert dq.ema_count.view(-1).tolist() == pytest.approx(n_ema)
    assert dq.ema_sum.view(-1).tolist() == pytest.approx(s_ema)
    assert dq.embed.view(-1).tolist() == pytest.approx([s / c for s, c in zip(s_ema, smoothed)])
    # the output used the codebook from before the update
    assert out.quantized.view(-1).tolist() == [0.0, 0.0, 10.0]


def test_eval_mode_leaves_codebooks_unchanged_and_training_moves_them():
    torch.manual_seed(11)
    dq = DepthwiseQuantizer(2, 8, 3, kmeans_init=True)
    x = torch.randn(4, 6, 5, 5)
    state = {k: v.clone() for k, v in dq.state_dict().items()}
    dq.eval()
    dq(x)
    for k, v in dq.state_dict().items():
        assert torch.equal(v, state[k]), k
    dq.train()
    dq(x)
    assert not torch.equal(dq.embed, state["embed"])
    assert not torch.equal(dq.ema_count, state["ema_count"])


def test_dead_code_moves_onto_a_batch_vector_and_its_statistics_reset():
    torch.manual_seed(12)
    dq = DepthwiseQuantizer(1, 3, 2, decay=0.99, dead_code_threshold=1.0).train()
    with torch.no_grad():
        dq.embed.copy_(torch.tensor([[[0.0, 0.0], [5.0, 5.0], [1e3, 1e3]]]))  # code 2 unreachable
        dq.ema_count.copy_(torch.tensor([[50.0, 50.0, 1.0]]))
        dq.ema_sum.copy_(dq.embed * dq.ema_count.unsqueeze(-1))
    x = torch.cat([torch.randn(40, 2) * 0.1, torch.randn(40, 2) * 0.1 + 5])  # (80, 2)
    out = dq(x)
    assert out.counts[0, 2] == 0
    moved = dq.embed[0, 2]
    # the new code sits on one of the batch vectors (up to the tie-breaking noise)
    gap = (x - moved).norm(dim=-1).min()
    assert gap < 1e-2 * x.pow(2).mean().sqrt()
    assert dq.ema_count[0, 2].item() == pytest.approx(1.0)
    assert torch.allclose(dq.ema_sum[0, 2], moved * 1.0)
    # live codes kept their EMA values
    assert dq.ema_count[0, 0].item() == pytest.approx(0.99 * 50 + 0.01 * 40)
    assert dq.dead_codes().tolist() == [0]


def test_kmeans_init_finds_separated_clusters_once():
    torch.manual_seed(13)
    centers = torch.tensor([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    x = (centers[torch.arange(300) % 3] + 0.1 * torch.randn(300, 2))  # (300, 2) vectors
    dq = DepthwiseQuantizer(1, 3, 2, kmeans_init=True, decay=1.0, dead_code_threshold=0).train()
    assert not bool(dq.initialized)
    dq(x)
    assert bool(dq.initialized)
    found = dq.codebooks[0][dq.codebooks[0][:, 0].argsort()]  # sort by x coordinate
    assert torch.allclose(found, centers[centers[:, 0].argsort()], atol=0.05)
    assert dq.ema_count.sum().item() == 300
    # a loaded initialised module does not re-run k-means
    fresh = DepthwiseQuantizer(1, 3, 2, kmeans_init=True, decay=1.0, dead_code_threshold=0)
    fresh.load_state_dict(dq.state_dict())
    before = fresh.embed.clone()
    fresh.train()(x + 100)
    assert torch.equal(fresh.embed, before)


def test_perplexity_and_usage_from_batch_counts():
    dq = DepthwiseQuantizer(1, 4, 1, dead_code_threshold=0).eval()
    with torch.no_grad():
        dq.embed.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1))
    x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])  # codes 0, 0, 1, 1
    out = dq(x)
    assert out.counts.tolist() == [[2.0, 2.0, 0.0, 0.0]]
    assert out.perplexity.item() == pytest.approx(2.0)
    assert out.usage.item() == pytest.approx(0.5)


# -- round trips, precision ------------------------------------------------------------------


def test_decode_round_trips_indices():
    torch.manual_seed(14)
    for kwargs, shape in [({}, (2, 12, 3, 3)), ({}, (2, 5, 12)), ({}, (4, 12)),
                          ({"axis": "spatial", "num_codebooks": 3}, (2, 12, 3, 5))]:
        kwargs = {"num_codebooks": 3, **kwargs}
        dq = DepthwiseQuantizer(codebook_size=7, code_dim=4, **kwargs).eval()
        out = dq(torch.randn(*shape))
        assert torch.equal(dq.decode(out.indices), out.quantized)


def test_state_dict_round_trip():
    torch.manual_seed(15)
    a = DepthwiseQuantizer(2, 8, 3).train()
    x = torch.randn(4, 6, 4, 4)
    a(x)
    b = DepthwiseQuantizer(2, 8, 3)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    assert torch.equal(a(x).quantized, b(x).quantized)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_bf16_autocast_keeps_fp32_codebooks_and_fp32_search():
    torch.manual_seed(16)
    dq = DepthwiseQuantizer(2, 16, 4).train()
    conv = torch.nn.Conv2d(3, 8, 1)
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        assert h.dtype == torch.bfloat16
        embed_before = dq.embed.clone()
        out = dq(h)
    assert dq.embed.dtype == torch.float32 and dq.ema_sum.dtype == torch.float32
    assert out.loss.dtype == torch.float32
    assert out.quantized.dtype == torch.bfloat16
    # the search used the fp32 distances of the bf16 values to the (pre-update) codebook
    hf = h.float()
    for m in range(2):
        v = hf[:, 4 * m : 4 * m + 4].permute(0, 2, 3, 1).reshape(-1, 4)
        assert torch.equal(out.indices[:, m].reshape(-1), nearest(v, embed_before[m]))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"codebook_size": 0}, "codebook_size"),
        ({"decay": 1.5}, r"decay must be in \[0, 1\]"),
        ({"decay": -0.1}, "decay"),
        ({"axis": "depth"}, "axis must be one of"),
        ({"learning": "adam"}, "learning must be one of"),
        ({"in_channels": 20}, "expected 2"),
        ({"eps": 0.0}, "eps"),
        ({"dead_code_threshold": -1}, "dead_code_threshold"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"num_codebooks": 2, "codebook_size": 8, "code_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        DepthwiseQuantizer(**args)


def test_non_integer_sizes_raise_type_error():
    with pytest.raises(TypeError, match="codebook_size"):
        DepthwiseQuantizer(2, 8.0, 4)


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, (2, 7, 3, 3), "expected 8 channels in dim 1 of the input, got 7"),
        ({}, (2, 3, 7), "expected 8 channels in the last dim of the input, got 7"),
        ({}, (8,), "rank 1"),
        ({}, (1, 2, 8, 3, 3), "rank 5"),
        ({"axis": "spatial"}, (2, 8, 5, 5), "expected 2 rows"),
        ({"axis": "spatial"}, (2, 8), "needs a spatial axis"),
    ],
)
def test_bad_input_raises_with_what_was_expected(kwargs, shape, match):
    dq = DepthwiseQuantizer(2, 8, 4, **kwargs)
    with pytest.raises(ValueError, match=match):
        dq(torch.randn(*shape))


def test_decode_rejects_out_of_range_indices():
    dq = DepthwiseQuantizer(2, 8, 4)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        dq.decode(torch.full((1, 2, 2, 2), 8))
    with pytest.raises(ValueError, match="expected 2 codes per position"):
        dq.decode(torch.zeros(1, 3, 2, 2, dtype=torch.long))


def test_capacity_is_m_log2_k():
    assert DepthwiseQuantizer(5, 32, 8).bits_per_position == pytest.approx(5 * math.log2(32))


@pytest.mark.parametrize("learning", ["ema", "gradient"])
def test_a_non_finite_batch_leaves_the_codebooks_untouched(learning):
    torch.manual_seed(17)
    dq = DepthwiseQuantizer(2, 8, 3, learning=learning).train()
    before = {k: v.clone() for k, v in dq.state_dict().items()}
    x = torch.randn(4, 6, 3, 3)
    x[1, 2, 0, 0] = float("nan")
    dq(x)
    for k, v in dq.state_dict().items():
        assert torch.equal(v, before[k]), k
    dq(torch.randn(4, 6, 3, 3))  # a finite batch updates as usual
    assert not torch.equal(dq.ema_count, before["ema_count"])


def test_kmeans_init_waits_for_a_finite_batch():
    torch.manual_seed(18)
    dq = DepthwiseQuantizer(1, 4, 2, kmeans_init=True).train()
    before = dq.embed.clone()
    x = torch.randn(32, 2)
    x[3, 1] = float("nan")
    dq(x)
    assert not bool(dq.initialized) and torch.equal(dq.embed, before)
    dq(torch.randn(32, 2))
    assert bool(dq.initialized) and torch.isfinite(dq.embed).all()


@pytest.mark.parametrize("training", [True, False])
def test_an_empty_batch_is_harmless(training):
    dq = DepthwiseQuantizer(2, 8, 4).train(training)
    before = {k: v.clone() for k, v in dq.state_dict().items()}
    x = torch.randn(0, 8, 4, 4, requires_grad=True)
    out = dq(x)
    assert out.quantized.shape == (0, 8, 4, 4) and out.indices.shape == (0, 2, 4, 4)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert torch.equal(dq.embed, before["embed"])


def test_bits_per_position_counts_the_pieces_of_a_position():
    # spatial: 16 rows (codebooks), each position cut into ceil(8 / 4) = 2 pieces
    assert DepthwiseQuantizer(16, 32, 4, axis="spatial", in_channels=8).bits_per_position == 10
    assert DepthwiseQuantizer(7, 32, 74, axis="spatial", in_channels=512).bits_per_position == 35
    assert DepthwiseQuantizer.coupled_baseline(3, 8, 4).bits_per_position == 9
    assert DepthwiseQuantizer.product(dim=10, num_subvectors=3, codebook_size=16).bits_per_position == 12


def test_product_explains_splits_it_cannot_make():
    with pytest.raises(ValueError, match="cannot cut dim=9 into 4 equal sub-vectors"):
        DepthwiseQuantizer.product(dim=9, num_subvectors=4, codebook_size=8)
    assert DepthwiseQuantizer.product(dim=9, num_subvectors=3, codebook_size=8).code_dim == 3


def test_gradient_learning_gives_no_gradient_to_reinitialised_codes():
    torch.manual_seed(19)
    dq = DepthwiseQuantizer(1, 3, 2, learning="gradient", dead_code_threshold=1.0).train()
    with torch.no_grad():
        dq.embed.copy_(torch.tensor([[[0.0, 0.0], [5.0, 5.0], [0.1, 0.1]]]))
        dq.ema_count.copy_(torch.tensor([[50.0, 50.0, 0.5]]))  # code 2 is about to be re-seeded
    x = torch.cat([torch.zeros(1, 2) + 0.12, torch.randn(20, 2) * 0.05, torch.randn(20, 2) * 0.05 + 5])
    out = dq(x)
    assert out.counts[0, 2] > 0  # code 2 was used by this batch, then re-seeded
    out.loss.backward()
    assert torch.equal(dq.embed.grad[0, 2], torch.zeros(2))
    assert dq.embed.grad[0, :2].abs().sum() > 0
