"""Dtypes, non-finite inputs and host synchronisation of DepthwiseQuantizer."""

import contextlib

import pytest
import torch

from depthq import DepthwiseQuantizer

# -- module dtypes: .half() / .bfloat16() / .double() ---------------------------------------


@pytest.mark.parametrize("convert, dtype", [("double", torch.float64), ("half", torch.float16),
                                            ("bfloat16", torch.bfloat16)])
@pytest.mark.parametrize("learning", ["ema", "gradient"])
def test_a_converted_module_computes_in_fp32_and_answers_in_the_input_dtype(convert, dtype, learning):
    torch.manual_seed(0)
    ref = DepthwiseQuantizer(2, 16, 4, learning=learning).train()
    dq = getattr(DepthwiseQuantizer(2, 16, 4, learning=learning), convert)().train()
    dq.load_state_dict(ref.state_dict())
    for name, t in [*dq.named_buffers(), *dq.named_parameters()]:
        assert t.dtype in (torch.float32, torch.bool), (name, t.dtype)  # statistics stay fp32
    x = torch.randn(3, 8, 5, 5).to(dtype).requires_grad_()
    torch.manual_seed(1)
    out = dq(x)
    torch.manual_seed(1)  # the same dead-code draws
    expected = ref(x.detach().float())  # the fp32 module on the same values
    assert out.quantized.dtype == dtype
    assert torch.equal(out.indices, expected.indices)
    assert torch.equal(out.quantized, expected.quantized.to(dtype))
    assert out.loss.dtype == torch.float32 and torch.equal(out.loss, expected.loss)
    # the training step moved the codebooks exactly as the fp32 module's
    assert torch.equal(dq.embed, ref.embed) and torch.equal(dq.ema_count, ref.ema_count)
    out.loss.backward()
    assert x.grad.dtype == dtype
    if learning == "gradient":
        assert isinstance(dq.embed, torch.nn.Parameter) and dq.embed.grad.dtype == torch.float32


def test_to_keeps_fp32_and_state_dict_round_trips():
    dq = DepthwiseQuantizer(2, 8, 3).to(torch.float16)
    assert dq.embed.dtype == torch.float32
    back = DepthwiseQuantizer(2, 8, 3)
    back.load_state_dict(dq.state_dict())
    assert torch.equal(back.embed, dq.embed)


# -- non-finite vectors ----------------------------------------------------------------------


def test_eval_counts_non_finite_vectors_per_codebook_and_gives_them_code_zero():
    torch.manual_seed(2)
    dq = DepthwiseQuantizer(3, 8, 2).eval()
    with torch.no_grad():
        dq.embed[:, 0] += 100  # code 0 is nobody's nearest code
    x = torch.randn(2, 6, 3, 3)
    clean = dq(x)
    assert clean.nonfinite.tolist() == [0, 0, 0] and clean.nonfinite.dtype == torch.int64
    x[0, 0, 1, 1] = float("nan")  # codebook 0 (channels 0-1)
    x[1, 5, 0, 0] = float("inf")  # codebook 2 (channels 4-5)
    x[1, 4, 2, 2] = float("-inf")  # codebook 2 again, another position
    out = dq(x)
    assert out.nonfinite.tolist() == [1, 0, 2]
    assert out.indices[0, 0, 1, 1] == 0 and out.indices[1, 2, 0, 0] == 0 and out.indices[1, 2, 2, 2] == 0
    assert out.counts[:, 0].tolist() == [1.0, 0.0, 2.0]  # they are counted under code 0
    unaffected = torch.ones_like(out.indices, dtype=torch.bool)
    unaffected[0, 0, 1, 1] = unaffected[1, 2, 0, 0] = unaffected[1, 2, 2, 2] = False
    assert torch.equal(out.indices[unaffected], clean.indices[unaffected])


def test_training_counts_non_finite_vectors_and_skips_the_update():
    torch.manual_seed(3)
    dq = DepthwiseQuantizer(2, 8, 3).train()
    before = dq.embed.clone()
    x = torch.randn(4, 6, 3, 3)
    x[2, 4, 1, 0] = float("nan")
    out = dq(x)
    assert out.nonfinite.tolist() == [0, 1]
    assert torch.equal(dq.embed, before)


# -- no host synchronisation in a training step ----------------------------------------------


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Fail on every Python-level read of a tensor's value (.item(), bool(), float(), int(),
    .tolist()). On CUDA each would wait for the GPU; the cuda tests also check it at the
    driver level with torch.cuda.set_sync_debug_mode."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor's value was read on the host")

    with monkeypatch.context() as mp:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            mp.setattr(torch.Tensor, name, refuse)
        yield


@pytest.mark.parametrize("kwargs", [
    {},  # EMA, dead-code replacement on
    {"learning": "gradient"},
    {"kmeans_init": True},  # after the initialisation step
    {"axis": "spatial"},
    {"coupled": True},
])
def test_a_training_step_reads_nothing_on_the_host(monkeypatch, kwargs):
    torch.manual_seed(4)
    dq = DepthwiseQuantizer(4, 16, 2, **kwargs).train()
    channels = 2 if kwargs.get("coupled") else 8
    x = torch.randn(4, channels, 4, 4, requires_grad=True)
    dq(x)  # the k-means initialisation may read once, here
    with no_host_reads(monkeypatch):
        for _ in range(2):
            out = dq(x)
            (out.quantized.sum() + out.loss).backward()
    assert x.grad is not None
