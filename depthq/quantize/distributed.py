"""The few collectives the quantizer needs, checked at call time.

Whether a process group is up is asked at every call, never cached at construction: a module
built before ``init_process_group`` (the usual case with Lightning) must still synchronise.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default group; 0 when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def all_reduce_sum_(*tensors: Tensor) -> None:
    """Sum tensors over all ranks in place, with a single collective.

    The tensors are packed into one flat fp32 buffer, reduced once, and unpacked: one call
    per training step rather than one per statistic.
    """
    if world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def owner_mask(num_items: int, device: torch.device) -> Tensor:
    """(num_items,) float mask, 1 where this rank owns item i (i % world_size == rank).

    Multiplying per-rank random draws by this mask and summing over ranks gives every item
    exactly one draw, made by its owner: the same result on every rank, from one all-reduce.
    """
    ws = world_size()
    if ws == 1:
        return torch.ones(num_items, device=device)
    items = torch.arange(num_items, device=device)
    return (items % ws == rank()).float()


def all_reduce_sum_with_grad(t: Tensor) -> Tensor:
    """The sum of ``t`` over all ranks, differentiable (``torch.distributed.nn``): its backward
    sums the incoming gradients over ranks, so a loss computed from global statistics on every
    rank gets, after DDP's averaging over ranks, the gradient of that loss taken once over the
    concatenated batch. ``t`` itself when torch.distributed is not in use."""
    if world_size() == 1:
        return t
    # only under DDP: importing torch.distributed.nn costs time and is not needed by one process
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t, op=dist.ReduceOp.SUM)
