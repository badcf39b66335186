"""FiniteScalarQuantizer against the definition, element by element, and under low precision."""

import math

import pytest
import torch

from depthq.quantize import FiniteScalarQuantizer, digits_to_index


def reference_digit(z: float, levels: int) -> int:
    """Spec section 8, one scalar at a time, in float64: y = h tanh(z) - o, rounded to the
    nearest integer (ties to even), clamped to the L levels, digit = k + h."""
    h = levels // 2
    offset = 0.5 if levels % 2 == 0 else 0.0
    k = round(h * math.tanh(z) - offset)  # Python's round: ties to even, as torch.round
    k = min(max(k, -h), h - (levels % 2 == 0))
    return k + h


def test_values_lie_on_the_grid_of_the_definition():
    fsq = FiniteScalarQuantizer([8, 5, 4, 3, 2]).eval()
    torch.manual_seed(0)
    x = torch.randn(300, 5) * 1.5
    out = fsq(x)
    for i, levels in enumerate(fsq.levels):
        h, offset = levels // 2, 0.5 if levels % 2 == 0 else 0.0
        for n in range(0, 300, 7):
            digit = reference_digit(float(x[n, i]), levels)
            assert int(out.indices[n, i]) == digit
            assert float(out.quantized[n, i]) == pytest.approx((digit - h + offset) / h, abs=1e-7)


@pytest.mark.parametrize("levels, expected", [
    (4, [-0.75, -0.25, 0.25, 0.75]),
    (5, [-1.0, -0.5, 0.0, 0.5, 1.0]),
    (2, [-0.5, 0.5]),
    (7, [k / 3 for k in range(-3, 4)]),
])
def test_every_level_count_gives_l_symmetric_levels_even_where_tanh_saturates(levels, expected):
    fsq = FiniteScalarQuantizer([levels])
    z = torch.cat([torch.linspace(-6, 6, 4001), torch.tensor([-50.0, 50.0])]).view(-1, 1)  # tanh = +-1
    values = sorted(set(fsq(z).quantized.view(-1).tolist()))
    assert values == pytest.approx(expected)
    assert fsq.implicit_codebook().view(-1).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_level_and_every_code_is_reachable_under_autocast(dtype):
    """vector-quantize-pytorch issue 114: under bf16 FSQ [8, 5, 5, 5] used about half its codes.
    Here the inputs come from a conv under autocast (so they are bf16/fp16), one input near the
    centre of every one of the 1000 cells; every code must come out."""
    levels = [8, 5, 5, 5]
    fsq = FiniteScalarQuantizer(levels).train()
    codes = torch.arange(fsq.codebook_size).view(-1, 1)
    digits = fsq.unpack_indices(codes)  # (1000, 4)
    lv = torch.tensor(levels)
    h, offset = (lv // 2).float(), (lv % 2 == 0).float() * 0.5
    target = 0.9 * (digits.float() - h)  # strictly inside the cell of integer k = digit - h
    z = torch.atanh((target + offset) / h)  # (1000, 4): h tanh(z) - o = target
    conv = torch.nn.Conv2d(4, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
    with torch.autocast("cpu", dtype=dtype):
        h_map = conv(z.t().reshape(1, 4, 40, 25))  # (1, 4, 40, 25) in low precision
        assert h_map.dtype == dtype
        out = fsq(h_map)
    assert out.quantized.dtype == dtype
    packed = fsq.pack_indices(out.indices).view(-1)
    assert torch.equal(packed.sort().values, torch.arange(1000))  # all 1000 codes, once each
    assert out.usage.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert torch.equal(out.counts.sum(-1), torch.full((4,), 1000.0)) and (out.counts[0] == 125).all()


def test_straight_through_gradient_is_that_of_tanh():
    fsq = FiniteScalarQuantizer([5, 4])
    x = torch.randn(6, 2, 3, 3, requires_grad=True)
    out = fsq(x)
    upstream = torch.randn_like(x)
    (g,) = torch.autograd.grad(out.quantized, x, upstream)
    assert torch.allclose(g, upstream * (1 - torch.tanh(x.detach()) ** 2))
    assert out.loss == 0 and out.commitment == 0


def test_indices_pack_to_the_mixed_radix_code_and_decode_exactly():
    torch.manual_seed(1)
    fsq = FiniteScalarQuantizer([7, 5, 5, 5, 5]).eval()
    for shape in [(2, 5, 3, 4), (3, 6, 5), (7, 5)]:
        out = fsq(torch.randn(*shape) * 2)
        assert out.indices.shape == shape and out.indices.dtype == torch.int64
        assert torch.equal(fsq.decode(out.indices), out.quantized)
        packed = fsq.pack_indices(out.indices)
        axis = 1 if len(shape) == 4 else -1
        d = out.indices.movedim(axis, -1)
        by_hand = d[..., 0] + 7 * (d[..., 1] + 5 * (d[..., 2] + 5 * (d[..., 3] + 5 * d[..., 4])))
        assert torch.equal(packed.squeeze(axis), by_hand)
        assert torch.equal(fsq.unpack_indices(packed), out.indices)
        assert torch.equal(packed, digits_to_index(out.indices, fsq.alphabet_sizes))
    assert fsq.bits_per_position == pytest.approx(math.log2(7 * 5**4))


def test_nonfinite_positions_get_code_zero_no_gradient_and_are_counted():
    fsq = FiniteScalarQuantizer([5, 4, 3])
    x = torch.randn(2, 3, 2, 2)
    x[0, 1, 1, 0] = float("nan")
    x[1, 2, 0, 1] = float("inf")
    x.requires_grad_()
    out = fsq(x)
    assert out.nonfinite.tolist() == [2, 2, 2]
    assert out.indices[0, :, 1, 0].tolist() == [0, 0, 0] and out.indices[1, :, 0, 1].tolist() == [0, 0, 0]
    assert torch.isfinite(out.quantized).all()
    (g,) = torch.autograd.grad(out.quantized.sum(), x)
    assert torch.isfinite(g).all() and g[0, :, 1, 0].abs().sum() == 0


def test_mask_leaves_positions_out_of_the_statistics():
    fsq = FiniteScalarQuantizer([3, 3])
    x = torch.tensor([[[-5.0, -5.0], [0.0, 5.0], [float("nan"), 0.0]]])  # (1, 3, 2) sequence
    out = fsq(x, mask=torch.tensor([[True, True, False]]))
    assert out.counts.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    assert out.nonfinite.tolist() == [0, 0] and out.usage.tolist() == pytest.approx([2 / 3, 2 / 3])
    assert out.perplexity.tolist() == pytest.approx([2.0, 2.0])


def test_a_module_cast_to_half_keeps_an_exact_grid():
    fsq = FiniteScalarQuantizer([8, 5]).half()
    x = torch.randn(4, 2).half()
    out = fsq(x)
    ref = FiniteScalarQuantizer([8, 5])(x.float())
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.quantized, ref.quantized.half())


@pytest.mark.parametrize("levels, error, match", [
    ([], TypeError, "non-empty"),
    ([8, 1], ValueError, ">= 2"),
    ([8, 2.0], TypeError, "ints"),
    ("85", TypeError, "non-empty sequence"),
])
def test_bad_levels(levels, error, match):
    with pytest.raises(error, match=match):
        FiniteScalarQuantizer(levels)


def test_bad_inputs_and_indices():
    fsq = FiniteScalarQuantizer([5, 5])
    with pytest.raises(ValueError, match="expected 2 channels"):
        fsq(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\[0, L_i\)"):
        fsq.decode(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="expected 2 digits"):
        fsq.decode(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="more than int64"):
        FiniteScalarQuantizer([8] * 22).pack_indices(torch.zeros(1, 22, dtype=torch.long))
