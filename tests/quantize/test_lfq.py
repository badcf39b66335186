"""LookupFreeQuantizer against its definition: signs, indices and the entropy terms by hand."""

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from depthq.quantize import LookupFreeQuantizer


def brute_entropies(z: torch.Tensor, group: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """E[H(q(z))] and H(E[q(z)]) summed over groups, with q(c|z) = softmax(-||z - c||^2 / tau)
    over the explicit list of 2^g sign codes (float64). z: (N, d)."""
    n, d = z.shape
    codes = torch.tensor([[1.0 if (c >> j) & 1 else -1.0 for j in range(group)] for c in range(2**group)],
                         dtype=z.dtype)  # fmt: skip
    per_sample, batch = 0.0, 0.0
    for start in range(0, d, group):
        sq = ((z[:, None, start : start + group] - codes[None]) ** 2).sum(-1)  # (N, 2^g)
        p = torch.softmax(-sq / tau, -1)
        per_sample = per_sample + (-(p * p.clamp(min=1e-300).log()).sum(-1)).mean()
        avg = p.mean(0)
        batch = batch + -(avg * avg.clamp(min=1e-300).log()).sum()
    return per_sample, batch


def test_signs_and_index_follow_the_definition():
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(6, group_size=3).eval()
    x = torch.randn(5, 6, 2, 3)
    x[0, 2, 0, 0] = 0.0  # sign(0) is -1: [z_i > 0]
    out = lfq(x)
    assert torch.equal(out.quantized, torch.where(x > 0, 1.0, -1.0))
    bits = (x > 0).long()
    full = sum(bits[:, i] << i for i in range(6))  # index = sum_i 2^i [z_i > 0]
    assert torch.equal(lfq.pack_indices(out.indices)[:, 0], full)
    assert torch.equal(out.indices[:, 0], full % 8) and torch.equal(out.indices[:, 1], full // 8)
    assert torch.equal(lfq.decode(out.indices), out.quantized)
    assert torch.equal(lfq.unpack_indices(lfq.pack_indices(out.indices)), out.indices)
    assert lfq.alphabet_sizes == (8, 8) and lfq.bits_per_position == 6


@pytest.mark.parametrize("dim, group, tau", [(4, 4, 1.0), (6, 3, 0.5), (6, 2, 0.01)])
def test_entropy_terms_and_their_gradient_match_the_brute_force_formula(dim, group, tau):
    torch.manual_seed(1)
    lfq = LookupFreeQuantizer(dim, group_size=group, temperature=tau, entropy_weight=0.1,
                              diversity_gamma=0.7, commitment_weight=0.25).train()  # fmt: skip
    x = (torch.randn(3, 5, dim) * 0.8).requires_grad_()  # (B, N, d)
    out = lfq(x)
    x64 = x.detach().double().reshape(-1, dim).requires_grad_()
    per_sample, batch = brute_entropies(x64, group, tau)
    commitment = ((x64 - torch.where(x64 > 0, 1.0, -1.0)) ** 2).mean()
    assert out.per_sample_entropy.item() == pytest.approx(per_sample.item(), rel=1e-4, abs=1e-6)
    assert out.batch_entropy.item() == pytest.approx(batch.item(), rel=1e-5)
    assert out.commitment.item() == pytest.approx(commitment.item(), rel=1e-6)
    loss = 0.1 * (per_sample - 0.7 * batch) + 0.25 * commitment
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
    (ours,) = torch.autograd.grad(out.loss, x)
    (ref,) = torch.autograd.grad(loss, x64)
    assert torch.allclose(ours.reshape(-1, dim).double(), ref, rtol=1e-3, atol=1e-6)


def test_chunking_changes_neither_the_loss_nor_its_gradient():
    torch.manual_seed(2)
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    results = []
    for chunk in (1, 300, None):
        lfq = LookupFreeQuantizer(8, group_size=4, temperature=0.3, chunk_elements=chunk).train()
        out = lfq(x)
        (g,) = torch.autograd.grad(out.loss, x)
        results.append((out.loss.detach(), g))
    for loss, g in results[1:]:
        assert torch.allclose(loss, results[0][0], atol=1e-6) and torch.allclose(g, results[0][1], atol=1e-7)


def peak_cpu_bytes(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())  # fmt: skip
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def test_24_bits_train_in_bounded_memory():
    """2^24 codes: an N x 2^d soft assignment would need N * 64 MiB; two groups of 12 bits in
    chunks of 2^16 elements stay near G * chunk * 4 bytes plus O(N d)."""
    torch.manual_seed(3)
    lfq = LookupFreeQuantizer(24, chunk_elements=2**16).train()
    assert lfq.group_size == 12 and lfq.alphabet_sizes == (4096, 4096)
    x = torch.randn(2048, 24, requires_grad=True)

    def step():
        out = lfq(x)
        out.loss.backward()

    peak = peak_cpu_bytes(step)
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_entropy_loss_is_training_only_and_nonfinite_or_masked_positions_stay_out():
    torch.manual_seed(4)
    lfq = LookupFreeQuantizer(4, temperature=0.5).train()
    x = torch.randn(2, 6, 4)
    clean = lfq(x[:, :4])
    x[0, 4, 1] = float("nan")  # a non-finite position
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 5] = False
    mask[1, 4] = False
    x.requires_grad_()
    out = lfq(x, mask=mask)
    assert out.nonfinite.tolist() == [1] and out.indices[0, 4, 0] == 0
    assert torch.allclose(out.per_sample_entropy, clean.per_sample_entropy)
    assert torch.allclose(out.batch_entropy, clean.batch_entropy)
    assert torch.allclose(out.commitment, clean.commitment)
    assert out.counts.sum() == 9  # 8 clean positions and the non-finite one (code 0)
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.isfinite(g).all() and g[:, 5].abs().sum() == 0
    lfq.eval()
    evaluated = lfq(x.detach())
    assert evaluated.per_sample_entropy == 0 and evaluated.batch_entropy == 0
    assert torch.allclose(evaluated.loss, 0.25 * evaluated.commitment)


def test_uniform_codes_reach_the_maximal_batch_entropy():
    bits = torch.tensor([[(c >> j) & 1 for j in range(3)] for c in range(8)]).float() * 20 - 10  # (8, 3)
    out = LookupFreeQuantizer(3).train()(bits)
    assert out.batch_entropy.item() == pytest.approx(math.log(8), rel=1e-5)
    assert out.per_sample_entropy.item() == pytest.approx(0.0, abs=1e-6)
    assert out.perplexity.item() == pytest.approx(8.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"dim": 6, "group_size": 4}, "must divide"),
    ({"dim": 0}, "dim must be"),
    ({"dim": 34, "group_size": 17}, r"\[1, 16\]"),
    ({"dim": 4, "temperature": 0.0}, "temperature must be >"),
    ({"dim": 4, "entropy_weight": -1.0}, "entropy_weight"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LookupFreeQuantizer(**kwargs)


def test_default_groups():
    assert LookupFreeQuantizer(10).group_size == 10
    assert LookupFreeQuantizer(18).group_size == 9
    with pytest.raises(ValueError, match="expected 2 group codes"):
        LookupFreeQuantizer(8, group_size=4).decode(torch.zeros(1, 3, dtype=torch.long))
