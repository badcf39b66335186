"""FSQ, LFQ, residual VQ/DQ and DQ's options under torch.distributed (gloo, CPU processes).

Two runs of spawned processes cover every quantizer at once: two ranks with half the batch
each, and three ranks of which one has no data and one only masked data. Every rank must end
with identical state (and identical global statistics), equal to one process on the
concatenated unmasked data where nothing random is involved; no rank may hang.
"""

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from depthq.quantize import DepthwiseQuantizer, FiniteScalarQuantizer, LookupFreeQuantizer, ResidualQuantizer

STEPS = 3
TIMEOUT = 30  # seconds a collective may wait before failing instead of hanging
FACTORIES = {
    "fsq": lambda: FiniteScalarQuantizer([5, 4, 3, 3, 2, 2]),
    "lfq": lambda: LookupFreeQuantizer(6, group_size=3, temperature=0.5),
    "rvq-ema": lambda: ResidualQuantizer.vq(2, 16, 6, dead_code_threshold=0.0),  # nothing random
    "rvq-dropout": lambda: ResidualQuantizer.vq(3, 16, 6, dropout=True, kmeans_init=True),
    "rdq": lambda: ResidualQuantizer(2, 8, 3, num_codebooks=2, kmeans_init=True, estimator="rotation"),
    "dq-options": lambda: DepthwiseQuantizer(2, 16, 3, cosine=True, estimator="rotation", kmeans_init=True),
    "dq-ema": lambda: DepthwiseQuantizer(2, 16, 3, dead_code_threshold=0.0),  # nothing random
    "dq-gradient": lambda: DepthwiseQuantizer(3, 8, 2, learning="gradient", kmeans_init=True),
}


def data(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, 4, 4, generator=g), torch.rand(8, 4, 4, generator=g) > 0.3) for _ in range(STEPS)]


def make(name: str):
    torch.manual_seed(123)  # identical initial state everywhere
    return FACTORIES[name]().train()


def run_steps(q, shares) -> dict:
    """Train on (x, mask) shares; the record of the last step and the final state."""
    for x, mask in shares:
        x = x.clone().requires_grad_()
        out = q(x, mask=mask)
        record = {}
        if out.batch_entropy is not None:
            record["entropies"] = torch.stack([out.per_sample_entropy, out.batch_entropy]).detach()
            # the entropy loss is global (the commitment is each rank's own mean, as DQ's)
            entropy_loss = out.per_sample_entropy - q.diversity_gamma * out.batch_entropy
            (record["entropy_grad"],) = torch.autograd.grad(entropy_loss, x, retain_graph=True)
        (out.loss + 0 * out.quantized.sum()).backward()  # FSQ has no loss
    record.update(state=q.state_dict(), counts=out.counts, nonfinite=out.nonfinite, loss=out.loss.detach())
    return record


def shares_of(rank: int, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if world == 2:  # halves
        return [(x[4 * rank : 4 * rank + 4], m[4 * rank : 4 * rank + 4]) for x, m in data()]
    # three ranks: rank 0 everything, rank 1 nothing, rank 2 four positions all masked
    if rank == 0:
        return data()
    if rank == 1:
        return [(x[:0], m[:0]) for x, m in data()]
    return [(x[:4], torch.zeros_like(m[:4])) for x, m in data()]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT))  # fmt: skip
    try:
        results = {}
        for name in FACTORIES:
            q = make(name)
            torch.manual_seed(1000 + rank)  # different local random draws on every rank
            results[name] = run_steps(q, shares_of(rank, world))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path, world: int, timeout: float = 240.0) -> list[dict]:
    ctx = mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=False,
                             start_method="spawn")  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{world} ranks still running after {timeout:.0f} s: one waits on a collective")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def single_process(name: str) -> dict:
    """One process on the concatenated data (what every rank together saw)."""
    return run_steps(make(name), data())


def assert_ranks_agree(ranks: list[dict]) -> None:
    for name in FACTORIES:
        first = ranks[0][name]
        for other in ranks[1:]:
            for key, value in first["state"].items():
                assert torch.equal(other[name]["state"][key], value), (name, key)
            assert torch.equal(other[name]["counts"], first["counts"]), name
            assert torch.equal(other[name]["nonfinite"], first["nonfinite"]), name
            if "entropies" in first:
                assert torch.equal(other[name]["entropies"], first["entropies"]), name


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return run_ranks(tmp_path_factory.mktemp("two"), 2)


@pytest.fixture(scope="module")
def three_ranks(tmp_path_factory):
    return run_ranks(tmp_path_factory.mktemp("three"), 3)


def test_two_ranks_agree_and_equal_one_process(two_ranks):
    assert_ranks_agree(two_ranks)
    for name in ("fsq", "lfq", "rvq-ema", "dq-ema"):
        single = single_process(name)
        ours = two_ranks[0][name]
        assert torch.equal(ours["counts"], single["counts"]), name  # global usage counts
        for key, value in single["state"].items():
            assert torch.allclose(ours["state"][key].float(), value.float(), atol=1e-5), (name, key)
        if name == "lfq":  # the entropy terms are over the global batch
            assert torch.allclose(ours["entropies"], single["entropies"], atol=1e-6)
        if name == "lfq":
            # each rank's entropy gradient is W times its share of the one-process gradient, so
            # DDP's averaging over ranks gives the one-process gradient
            for r in range(2):
                share = single["entropy_grad"][4 * r : 4 * r + 4]
                assert torch.allclose(two_ranks[r][name]["entropy_grad"], 2 * share, atol=1e-6), r


def test_an_empty_rank_and_a_fully_masked_rank_neither_hang_nor_diverge(three_ranks):
    assert_ranks_agree(three_ranks)
    for name in ("fsq", "lfq", "rvq-ema", "dq-ema"):
        single = single_process(name)  # rank 0's data alone: the others added nothing
        ours = three_ranks[0][name]
        assert torch.equal(ours["counts"], single["counts"]), name
        for key, value in single["state"].items():
            assert torch.allclose(ours["state"][key].float(), value.float(), atol=1e-5), (name, key)
        if name == "lfq":
            assert torch.allclose(ours["entropies"], single["entropies"], atol=1e-6)
    for name in FACTORIES:
        for value in three_ranks[0][name]["state"].values():
            assert torch.isfinite(value.float()).all(), name
        for rank in (1, 2):  # no data or only padding: no loss, no NaN
            assert torch.isfinite(three_ranks[rank][name]["loss"]), (name, rank)
    for name in ("rvq-dropout", "rdq", "dq-options", "dq-gradient"):  # k-means ran on rank 0's data
        initialized = [v for k, v in three_ranks[1][name]["state"].items() if k.endswith("initialized")]
        assert initialized and bool(initialized[0]), name  # (a stage dropout never used waits)
        assert all(bool(v) for v in initialized) or name == "rvq-dropout", name
