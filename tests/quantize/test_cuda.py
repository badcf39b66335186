"""The quantizer on a CUDA GPU against the CPU fp32 reference (``pytest -m cuda``).

Skipped without CUDA (CI is CPU-only); benchmarks/gpu.sh runs them on a lent GPU. Inputs on a
dyadic grid (multiples of 1/4, small) make every score and every batch sum exact in fp32, so
the GPU and the CPU must agree bit for bit on indices, ties included; on random data the
answers may differ only where two codes are within rounding of each other.
"""

import pytest
import torch
from search_reference import integer_grid

from depthq import DepthwiseQuantizer
from depthq.quantize.search import (
    CPU_CHUNK_ELEMENTS,
    CUDA_CHUNK_BYTES_CAP,
    default_chunk_elements,
    nearest_codes,
)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

#: (M, N, D, K): the search shapes of benchmarks/quantizer.py, and D beyond one kernel tile
SHAPES = [(5, 32768, 64, 32), (8, 8192, 64, 512), (8, 16384, 32, 1024), (4, 16384, 32, 8192),
          (3, 5000, 100, 300), (16, 4099, 1, 33)]


def assert_same_up_to_near_ties(idx, ref, x, codebooks, rel=1e-5):
    """Indices equal, except (rarely) where both codes are equally near in fp64."""
    diff = idx != ref
    if not diff.any():
        return
    assert diff.float().mean() < 1e-3, f"{int(diff.sum())} of {diff.numel()} indices differ"
    m, n = diff.nonzero(as_tuple=True)
    xd, cd = x[m, n].double(), codebooks.double()
    a = (xd - cd[m, idx[m, n]]).pow(2).sum(-1)
    b = (xd - cd[m, ref[m, n]]).pow(2).sum(-1)
    scale = xd.pow(2).sum(-1) + cd[m, ref[m, n]].pow(2).sum(-1)
    assert ((a - b).abs() <= rel * scale).all(), "a differing index is not a near tie"


def dyadic(shape, generator, limit=8):
    return torch.randint(-limit, limit + 1, shape, generator=generator).float() / 4


@pytest.mark.parametrize("chunk", [None, CPU_CHUNK_ELEMENTS, 5 * 1024 * 100])
def test_multi_chunk_search_matches_the_cpu(chunk):
    # the issue-10 crash: min(out=...) outputs of different strides in the second chunk
    x, codebooks = integer_grid(8, 65536, 1024, 32)
    got = nearest_codes(x.cuda(), codebooks.cuda(), chunk_elements=chunk).cpu()
    assert torch.equal(got, nearest_codes(x, codebooks))
    g = torch.Generator().manual_seed(1)
    x, codebooks = torch.randn(8, 65536, 32, generator=g), torch.randn(8, 1024, 32, generator=g)
    got = nearest_codes(x.cuda(), codebooks.cuda(), chunk_elements=chunk).cpu()
    assert_same_up_to_near_ties(got, nearest_codes(x, codebooks), x, codebooks)


def test_tf32_setting_does_not_reach_the_search():
    g = torch.Generator().manual_seed(2)
    x, codebooks = torch.randn(4, 20000, 64, generator=g), torch.randn(4, 1024, 64, generator=g)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # 10-bit mantissas would pick wrong codes
    try:
        got = nearest_codes(x.cuda(), codebooks.cuda()).cpu()
        assert torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    assert_same_up_to_near_ties(got, nearest_codes(x, codebooks), x, codebooks)  # CPU fp32


def test_chunk_budget_on_cuda_is_bounded():
    budget = default_chunk_elements(torch.device("cuda"))
    assert CPU_CHUNK_ELEMENTS <= budget <= CUDA_CHUNK_BYTES_CAP // 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("learning", ["ema", "gradient"])
def test_quantizer_under_autocast_matches_the_cpu_fp32_reference(dtype, learning):
    g = torch.Generator().manual_seed(3)
    x = dyadic((64, 8 * 32, 16, 16), g)  # N = 16,384 per codebook, several chunks at 2**22
    ref = DepthwiseQuantizer(8, 1024, 32, learning=learning, dead_code_threshold=0).train()
    with torch.no_grad():
        ref.embed.copy_(dyadic(ref.embed.shape, g))
        if learning == "ema":
            ref.ema_sum.copy_(ref.embed)
    dq = DepthwiseQuantizer(8, 1024, 32, learning=learning, dead_code_threshold=0,
                            chunk_elements=CPU_CHUNK_ELEMENTS).cuda().train()
    dq.load_state_dict(ref.state_dict())
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        out = dq(x.cuda().to(dtype))  # dyadic values are exact in bf16 and fp16
    expected = ref(x)
    assert out.quantized.dtype == dtype
    assert torch.equal(out.indices.cpu(), expected.indices)
    assert torch.equal(out.counts.cpu(), expected.counts)
    torch.testing.assert_close(out.loss.cpu(), expected.loss, rtol=1e-5, atol=1e-7)
    # the EMA arithmetic may round differently (FMA contraction) by a few fp32 ulps
    torch.testing.assert_close(dq.embed.cpu(), ref.embed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dq.ema_count.cpu(), ref.ema_count, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m, n, d, k", SHAPES)
def test_triton_search_matches_the_torch_search(m, n, d, k):
    pytest.importorskip("triton")
    x, codebooks = integer_grid(m, n, k, d, seed=k)
    x, codebooks = x.cuda(), codebooks.cuda()
    assert torch.equal(nearest_codes(x, codebooks, search="triton"),
                       nearest_codes(x, codebooks, search="torch"))
    g = torch.Generator().manual_seed(d)
    x, codebooks = torch.randn(m, n, d, generator=g), torch.randn(m, k, d, generator=g)
    got = nearest_codes(x.cuda(), codebooks.cuda(), search="triton").cpu()
    assert_same_up_to_near_ties(got, nearest_codes(x, codebooks), x, codebooks)


@pytest.mark.parametrize("kwargs", [{}, {"learning": "gradient"}, {"kmeans_init": True},
                                    {"search": "triton"}])
def test_training_steps_never_synchronise(kwargs):
    if kwargs.get("search") == "triton":
        pytest.importorskip("triton")
    torch.manual_seed(4)
    dq = DepthwiseQuantizer(8, 512, 32, **kwargs).cuda().train()
    x = torch.randn(32, 256, 16, 16, device="cuda", requires_grad=True)
    out = dq(x)  # first step: k-means may read once; kernels compile
    (out.quantized.sum() + out.loss).backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = dq(x)
            (out.quantized.sum() + out.loss).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(dq.embed).all()


@pytest.mark.parametrize("convert, dtype", [("half", torch.float16), ("bfloat16", torch.bfloat16)])
def test_a_converted_module_runs_on_cuda(convert, dtype):
    dq = getattr(DepthwiseQuantizer(4, 64, 8).cuda(), convert)().train()
    assert dq.embed.dtype == torch.float32 and dq.embed.is_cuda
    out = dq(torch.randn(8, 32, 8, 8, device="cuda", dtype=dtype))
    assert out.quantized.dtype == dtype and out.nonfinite.sum().item() == 0
