"""Two CPU processes (gloo): EMA statistics are all-reduced, codebooks stay identical."""

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from depthq import DepthwiseQuantizer

STEPS = 3
COLLECTIVE_TIMEOUT = 30  # seconds


def batches(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 6, 4, 4, generator=g) for _ in range(STEPS)]


def make_quantizer(**kwargs) -> DepthwiseQuantizer:
    torch.manual_seed(123)  # identical initial codebooks everywhere
    return DepthwiseQuantizer(2, 16, 3, **kwargs).train()


def _worker(rank: int, world: int, port: int, out_dir: str, kwargs: dict, split: tuple | None = None) -> None:
    # a collective that one rank never enters fails after this long instead of hanging
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT))
    try:
        dq = make_quantizer(**kwargs)  # built after init_process_group is fine too
        torch.manual_seed(1000 + rank)  # different local random draws on each rank
        bounds = split or tuple(8 // world * r for r in range(world + 1))
        for x in batches():
            out = dq(x[bounds[rank] : bounds[rank + 1]])
        torch.save(
            {"embed": dq.embed, "ema_count": dq.ema_count, "counts": out.counts,
             "initialized": dq.initialized},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(tmp_path, split=None, timeout: float = 150.0, **kwargs) -> list[dict]:
    """Run the worker on two ranks; fail (and kill them) if they are not done in ``timeout``."""
    ctx = mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), kwargs, split),
                             nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"two ranks still running after {timeout:.0f} s: one waits on a "
                        "collective the other never entered")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path):
    ranks = run_two_ranks(tmp_path, dead_code_threshold=0.0)
    assert torch.equal(ranks[0]["embed"], ranks[1]["embed"])
    assert torch.equal(ranks[0]["ema_count"], ranks[1]["ema_count"])
    single = make_quantizer(dead_code_threshold=0.0)
    for x in batches():
        out = single(x)
    assert torch.allclose(ranks[0]["embed"], single.embed, atol=1e-5, rtol=1e-5)
    assert torch.allclose(ranks[0]["ema_count"], single.ema_count, atol=1e-5)
    # usage counts in the output are global too
    assert torch.equal(ranks[0]["counts"], out.counts)


def test_dead_code_replacement_and_kmeans_stay_identical_across_ranks(tmp_path):
    ranks = run_two_ranks(tmp_path, dead_code_threshold=1.0, kmeans_init=True)
    assert torch.equal(ranks[0]["embed"], ranks[1]["embed"])
    assert torch.equal(ranks[0]["ema_count"], ranks[1]["ema_count"])


def test_a_rank_with_an_empty_batch_still_joins_and_agrees(tmp_path):
    ranks = run_two_ranks(tmp_path, split=(0, 8, 8), dead_code_threshold=1.0)  # rank 1 gets nothing
    assert torch.equal(ranks[0]["embed"], ranks[1]["embed"])
    assert (ranks[0]["embed"].abs().sum(-1) > 0).all()  # no code was "seeded" by the empty rank
    assert torch.equal(ranks[0]["ema_count"], ranks[1]["ema_count"])


def test_kmeans_init_with_an_empty_rank_neither_hangs_nor_diverges(tmp_path):
    # rank 1's batches are all empty: it must still enter every collective of the k-means
    # initialisation (and of every step after it), and end with rank 0's codebooks
    # (a rank stuck in a collective raises after COLLECTIVE_TIMEOUT; the run is killed later)
    ranks = run_two_ranks(tmp_path, split=(0, 8, 8), kmeans_init=True, dead_code_threshold=1.0)
    assert bool(ranks[0]["initialized"]) and bool(ranks[1]["initialized"])
    assert torch.equal(ranks[0]["embed"], ranks[1]["embed"])
    assert torch.equal(ranks[0]["ema_count"], ranks[1]["ema_count"])
    assert torch.isfinite(ranks[0]["embed"]).all()
