"""The fused Triton search against the torch path, on CPU in Triton's interpreter.

`make test` installs triton where its wheel installs (Linux x86-64), so CI runs these tests;
without the package they skip and say why.
The same kernel compiled for a GPU is checked by tests/quantize/test_cuda.py (``pytest -m cuda``).
"""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed: `make test` installs it on Linux x86-64 only, and its wheel did not install here")
if torch.cuda.is_available():  # Triton's interpreter and its compiler do not mix in one process
    pytest.skip("with a GPU, test_cuda.py tests the compiled kernel", allow_module_level=True)

from depthq import DepthwiseQuantizer  # noqa: E402
from depthq.quantize.search import nearest_codes, nearest_codes_and_scores  # noqa: E402

from search_reference import brute_force, integer_grid  # noqa: E402


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """Run kernels in Triton's CPU interpreter (conftest.py sets it before triton is imported;
    a test that changes it must not leak the change)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


# (M, N, K, D): N and K below, at and past the 64-wide tiles; D = 1, odd, and above the 64-wide
# D tile (the kernel's tiled-D loop)
SHAPES = [(1, 1, 1, 1), (2, 37, 5, 1), (3, 101, 70, 3), (2, 130, 129, 17), (1, 64, 64, 64),
          (2, 65, 200, 100)]


@pytest.mark.parametrize("m, n, k, d", SHAPES)
def test_random_vectors_match_the_torch_path_and_brute_force(m, n, k, d):
    g = torch.Generator().manual_seed(m * n + k * d)
    x = torch.randn(m, n, d, generator=g)
    codebooks = torch.randn(m, k, d, generator=g)
    idx, scores = nearest_codes_and_scores(x, codebooks, search="triton")
    assert idx.dtype == torch.int64 and idx.shape == (m, n)
    ref_idx, ref_scores = nearest_codes_and_scores(x, codebooks, search="torch")
    assert torch.equal(idx, ref_idx)
    assert torch.equal(idx, brute_force(x, codebooks))
    assert torch.allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m, n, k, d", SHAPES)
def test_exact_ties_resolve_like_torch_min(m, n, k, d):
    # integer data: scores are exact in fp32 and ties are everywhere, across code tiles too
    x, codebooks = integer_grid(m, n, k, d, seed=k)
    assert torch.equal(nearest_codes(x, codebooks, search="triton"),
                       nearest_codes(x, codebooks, search="torch"))


def test_duplicate_codes_in_different_tiles_keep_the_first():
    g = torch.Generator().manual_seed(5)
    codebooks = torch.randn(2, 150, 6, generator=g)
    codebooks[:, 130] = codebooks[:, 3]  # tile 2 duplicates a code of tile 0
    codebooks[:, 70] = codebooks[:, 100]  # two codes in tile 1
    x = torch.cat([codebooks[:, [3, 100]], torch.randn(2, 40, 6, generator=g)], 1)
    idx = nearest_codes(x, codebooks, search="triton")
    assert idx[:, 0].tolist() == [3, 3] and idx[:, 1].tolist() == [70, 70]
    assert torch.equal(idx, nearest_codes(x, codebooks, search="torch"))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the interpreter
def test_non_finite_vectors_get_code_zero():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 20, 4, generator=g)
    codebooks = torch.randn(2, 9, 4, generator=g)
    x[0, 3, 1], x[1, 7, 0] = float("nan"), float("-inf")
    idx = nearest_codes(x, codebooks, search="triton")
    assert idx[0, 3] == 0 and idx[1, 7] == 0
    assert torch.equal(idx, nearest_codes(x, codebooks, search="torch"))


def test_quantizer_with_the_triton_search_trains_like_the_torch_search():
    torch.manual_seed(7)
    ref = DepthwiseQuantizer(3, 40, 5).train()
    fused = DepthwiseQuantizer(3, 40, 5, search="triton").train()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(4, 15, 6, 6)
    torch.manual_seed(8)
    a = ref(x)
    torch.manual_seed(8)  # the same dead-code draws
    b = fused(x)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.quantized, b.quantized)
    assert torch.equal(ref.embed, fused.embed)


AOT_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from depthq.quantize import triton_search

kernel = triton.jit(triton_search._nearest_kernel)
for code_dim in (32, 100):  # one D tile; D walked in tiles
    config = triton_search.launch_config(code_dim)
    warps = config.pop("num_warps")
    constants = {"K": 1000, "D": code_dim, **config}
    signature = {name: "constexpr" if name in constants else
                 ("*i64" if name == "out_ptr" else "*fp32" if name.endswith("_ptr") else "i32")
                 for name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(kernel.arg_names.index(k),): v for k, v in constants.items()})
    target = GPUTarget("cuda", 90, 32)
    ptx = triton.compile(source, target=target, options={"num_warps": warps}).asm["ptx"]
    print(code_dim, "fma.rn.f32" in ptx, "tf32" in ptx or "mma" in ptx)
"""


def test_compiles_for_hopper_with_ieee_fp32_products_only(monkeypatch):
    """Ahead of time, without a GPU (Triton bundles ptxas): the kernel compiles for sm_90 and
    its PTX multiplies with IEEE fp32 FMAs, with no TF32 tensor-core instruction. In a fresh
    process: Triton's compiler and its interpreter do not mix in one."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    done = subprocess.run([sys.executable, "-c", AOT_COMPILE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["32 True False", "100 True False"]
