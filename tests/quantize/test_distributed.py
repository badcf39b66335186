"""Two CPU processes (gloo): EMA statistics are all-reduced, codebooks stay identical."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from depthq import DepthwiseQuantizer

STEPS = 3


def batches(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 6, 4, 4, generator=g) for _ in range(STEPS)]


def make_quantizer(**kwargs) -> DepthwiseQuantizer:
    torch.manual_seed(123)  # identical initial codebooks everywhere
    return DepthwiseQuantizer(2, 16, 3, **kwargs).train()


def _worker(rank: int, world: int, port: int, out_dir: str, kwargs: dict, split: tuple | None = None) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        dq = make_quantizer(**kwargs)  # built after init_process_group is fine too
        torch.manual_seed(1000 + rank)  # different local random draws on each rank
        bounds = split or tuple(8 // world * r for r in range(world + 1))
        for x in batches():
            out = dq(x[bounds[rank] : bounds[rank + 1]])
        torch.save(
            {"embed": dq.embed, "ema_count": dq.ema_count, "counts": out.counts},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(tmp_path, split=None, **kwargs) -> list[dict]:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), kwargs, split), nprocs=2, join=True)
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
