"""Every quantizer behind one interface, and depthq's guarantees for each of them:
shapes, exact decoding, fp32 search/rounding under autocast, the non-finite guard, no host
reads in a training step, and torch.compile(fullgraph=True) in training and eval."""

import contextlib

import pytest
import torch

from depthq.quantize import (
    DepthwiseQuantizer,
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    Quantizer,
    ResidualQuantizer,
)

C = 8  # input channels of every quantizer below

FACTORIES = {
    "dq": lambda: DepthwiseQuantizer(2, 16, 4),
    "dq-rotation-cosine": lambda: DepthwiseQuantizer(2, 16, 4, estimator="rotation", cosine=True),
    "dq-gradient": lambda: DepthwiseQuantizer(4, 8, 2, learning="gradient"),
    "fsq": lambda: FiniteScalarQuantizer([8, 6, 5, 5, 4, 3, 3, 2]),
    "lfq": lambda: LookupFreeQuantizer(C, group_size=4),
    "rvq": lambda: ResidualQuantizer.vq(3, 16, C),
    "rdq-dropout": lambda: ResidualQuantizer(2, (16, 8), 4, num_codebooks=2, dropout=True, kmeans_init=True),
}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return FACTORIES[name]()


def warm_up(q, x, mask=None, steps: int = 4) -> None:
    """Training steps until k-means has run everywhere: with quantizer dropout a stage waits
    for the first batch that uses it (and reads the host once per step until then)."""
    q.train()
    for _ in range(steps):
        q(x, mask=mask)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {"map": torch.randn(2, C, 3, 4, generator=g), "seq": torch.randn(2, 5, C, generator=g),
            "vec": torch.randn(6, C, generator=g)}  # fmt: skip


@pytest.mark.parametrize("name", FACTORIES)
def test_shapes_alphabets_and_exact_decoding(name):
    q = make(name)
    assert isinstance(q, Quantizer) and q.in_channels == q.out_channels == C
    sizes = q.alphabet_sizes
    p = len(sizes)
    assert q.bits_per_position == pytest.approx(sum(torch.log2(torch.tensor(sizes, dtype=torch.float64)).tolist()))
    warm_up(q, inputs()["map"])  # k-means, EMA
    q.eval()
    for kind, x in inputs().items():
        out = q(x)
        expected = {"map": (2, p, 3, 4), "seq": (2, 5, p), "vec": (6, p)}[kind]
        assert out.indices.shape == expected and out.indices.dtype == torch.int64, kind
        axis = 1 if kind == "map" else -1
        limits = torch.tensor(sizes).view([-1 if a == (axis % x.dim()) else 1 for a in range(x.dim())])
        assert ((out.indices >= 0) & (out.indices < limits)).all()
        assert out.quantized.shape == x.shape and out.quantized.dtype == x.dtype
        assert torch.equal(q.decode(out.indices), out.quantized), kind
        assert out.counts.shape == (p, max(sizes)) and out.counts.sum() == x.numel() // C * p
        assert out.perplexity.shape == out.usage.shape == out.nonfinite.shape == (p,)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_inputs_are_quantized_in_fp32(name, dtype):
    """Under autocast, with low-precision inputs, the indices are those of the fp32 computation
    on the same values (inputs spread densely so that many sit near a decision boundary)."""
    q = make(name).eval()
    x = (torch.randn(4, C, 8, 8) * 2).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        out = q(x)
    ref = q(x.float())
    assert out.quantized.dtype == dtype
    assert torch.equal(out.indices, ref.indices)
    assert torch.equal(out.quantized, ref.quantized.to(dtype))
    assert out.loss.dtype == torch.float32


@pytest.mark.parametrize("name", FACTORIES)
def test_nonfinite_vectors_get_code_zero_leave_the_state_and_are_counted(name):
    q = make(name).train()
    x = inputs()["seq"]
    warm_up(q, x)  # initialise (k-means) on clean batches
    x[0, 3, 1] = float("nan")
    x[1, 0, 6] = float("inf")
    before = {k: v.clone() for k, v in q.state_dict().items() if k != "dropout_step"}
    out = q(x)
    assert out.nonfinite.sum() > 0 and (out.nonfinite <= 2).all()
    assert torch.isfinite(out.quantized).all()  # code 0's values
    for k, v in before.items():
        assert torch.equal(q.state_dict()[k], v), k
    q.eval()
    out = q(x)
    first = out.indices[0, 3]  # the NaN is in channel 1
    if name.startswith("dq"):  # DQ: the codebook whose slice holds it
        assert first[0] == 0
    elif name.startswith("rdq"):  # residual DQ: that codebook, at every stage
        assert first[0] == 0 and first[2] == 0
    else:  # the position's code is one vector: every symbol is 0
        assert (first == 0).all()


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor's value was read on the host")

    with monkeypatch.context() as mp:
        for attr in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            mp.setattr(torch.Tensor, attr, refuse)
        yield


@pytest.mark.parametrize("name", FACTORIES)
def test_a_training_step_reads_nothing_on_the_host(monkeypatch, name):
    q = make(name).train()
    x = inputs()["map"].requires_grad_()
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1, 2] = False
    warm_up(q, x, mask)  # k-means reads the host until it has run
    with no_host_reads(monkeypatch):
        for _ in range(2):
            out = q(x, mask=mask)
            (out.quantized.sum() + out.loss).backward()
    assert x.grad is not None


@pytest.mark.parametrize("name", ["dq-rotation-cosine", "fsq", "lfq", "rdq-dropout"])
def test_torch_compile_fullgraph_in_training_and_eval(name):
    """Dynamo must trace the whole forward (and AOT autograd the backward) without a graph
    break; aot_eager keeps the test fast (inductor's C++ build takes minutes on 2 cores)."""
    q = make(name).train()
    x = inputs()["map"]
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False
    warm_up(q, x)  # k-means (its host read) happens eagerly
    reference = make(name).train()
    reference.load_state_dict(q.state_dict())
    compiled = torch.compile(q, fullgraph=True, backend="aot_eager")
    xc, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(5)
    out = compiled(xc, mask=mask)
    (out.quantized.sum() + out.loss).backward()
    torch.manual_seed(5)
    ref = reference(xr, mask=mask)
    (ref.quantized.sum() + ref.loss).backward()
    assert torch.equal(out.indices, ref.indices)
    assert torch.allclose(out.loss, ref.loss, atol=1e-6) and torch.allclose(xc.grad, xr.grad, atol=1e-6)
    for k, v in reference.state_dict().items():
        assert torch.allclose(q.state_dict()[k].float(), v.float(), atol=1e-5), k
    q.eval()
    out = compiled(x)
    assert torch.equal(q.decode(out.indices), out.quantized)
