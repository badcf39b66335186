"""The progressive-size schedule and the batch sampler that follows it.

A schedule is a list of stages ``Stage(image_size, steps)``: train ``steps`` batches at
``image_size``, then move to the next stage, with the same (fully convolutional) model. The last
stage may have ``steps=None`` and runs until the trainer stops; a last stage with a step count
also just continues past its end.

Training batches are a pure function of ``(seed, step)``, so a resumed run sees exactly the batches
an uninterrupted run would have seen:

- the step's stage comes from the schedule; the stage's local step ``l`` = step - stage start;
- with ``n`` images in the stage's training set and batch size ``B``, an epoch is ``n // B``
  batches (the remainder of the permutation is dropped, so every batch is full);
- epoch ``e = l // (n // B)`` of stage ``s`` uses ``torch.randperm(n)`` from a generator seeded
  with ``mix_seed(seed, s, e)``, and the step takes slice ``l % (n // B)`` of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from depthq.errors import DataError


@dataclass(frozen=True)
class Stage:
    """One stage of a progressive-size schedule."""

    image_size: int
    """Side of the training images in this stage (e.g. 32, then 64)."""
    steps: int | None = None
    """Number of training batches in this stage; None (last stage only): until the trainer stops."""

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 2:
            raise DataError(f"Stage.image_size must be an int >= 2; got {self.image_size!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise DataError(f"Stage.steps must be a positive int or None; got {self.steps!r}")


StageLike = Stage | tuple[int, int | None] | Mapping[str, int | None]


def parse_schedule(schedule: Sequence[StageLike] | None, default_size: int) -> tuple[Stage, ...]:
    """Stages from ``Stage`` objects, ``(image_size, steps)`` pairs or ``{"image_size", "steps"}`` dicts.

    None gives one open-ended stage at ``default_size``. Only the last stage may have ``steps=None``.
    """
    if schedule is None:
        return (Stage(default_size),)
    stages = []
    for item in schedule:
        if isinstance(item, Stage):
            stages.append(item)
        elif isinstance(item, Mapping):
            unknown = set(item) - {"image_size", "steps"}
            if unknown:
                raise DataError(f"unknown schedule keys {sorted(unknown)}; expected image_size, steps")
            stages.append(Stage(**item))  # type: ignore[arg-type]
        elif isinstance(item, Sequence) and len(item) == 2:
            stages.append(Stage(*item))
        else:
            raise DataError(f"a schedule stage is a Stage, (image_size, steps) or a dict; got {item!r}")
    if not stages:
        raise DataError("the schedule is empty; give at least one stage or None")
    if any(s.steps is None for s in stages[:-1]):
        raise DataError("only the last stage may have steps=None (it runs until the trainer stops)")
    return tuple(stages)


def stage_index(stages: Sequence[Stage], step: int) -> tuple[int, int]:
    """``(stage index, step within that stage)`` for the global batch ``step``."""
    start = 0
    for i, stage in enumerate(stages):
        if stage.steps is None or step < start + stage.steps or i == len(stages) - 1:
            return i, step - start
        start += stage.steps
    raise AssertionError("unreachable")


def mix_seed(*values: int) -> int:
    """A 63-bit seed that mixes the non-negative ints ``values`` (numpy's SeedSequence hash)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchKey(NamedTuple):
    """What the sampler hands the data set for one training step."""

    step: int  # global batch index
    stage: int  # index into the schedule
    indices: Tensor  # int64 (B,): rows of that stage's training set


class StagedBatchSampler(Sampler[BatchKey]):
    """An infinite sampler of ``BatchKey``s from ``start_step`` on (see the module docstring).

    Args:
        stages: the schedule.
        set_sizes: number of training images of each stage's set.
        batch_size: images per batch and process; every stage's set must hold at least
            batch_size * world_size images.
        seed: the data-order seed (>= 0).
        start_step: the first global step to yield (the trainer's step when resuming).
        rank: this process's rank. Under distributed training each step draws one global batch
            of batch_size * world_size images and this process takes slice ``rank`` of it, so
            the ranks see disjoint images and the order is the same for any rank count that
            gives the same global batch.
        world_size: the number of processes.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        set_sizes: Sequence[int],
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size
        global_batch = batch_size * world_size
        if len(stages) != len(set_sizes):
            raise DataError(f"{len(stages)} stages but {len(set_sizes)} set sizes")
        for stage, n in zip(stages, set_sizes):
            if n < global_batch:
                raise DataError(
                    f"the {stage.image_size}x{stage.image_size} training set has {n} images, "
                    f"fewer than batch_size={batch_size} x {world_size} processes"
                )
        if seed < 0 or start_step < 0:
            raise DataError(f"seed and start_step must be >= 0; got {seed}, {start_step}")
        self.stages = tuple(stages)
        self.set_sizes = tuple(int(n) for n in set_sizes)
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self._perm_key: tuple[int, int] | None = None  # (stage, epoch) of the cached permutation
        self._perm: Tensor | None = None

    def batch_at(self, step: int) -> BatchKey:
        """The batch of global ``step``: a pure function of (seed, step) and the schedule."""
        stage, local = stage_index(self.stages, step)
        global_batch = self.batch_size * self.world_size
        per_epoch = self.set_sizes[stage] // global_batch
        epoch, position = divmod(local, per_epoch)
        if self._perm_key != (stage, epoch):  # one permutation per epoch, reused by its steps
            generator = torch.Generator().manual_seed(mix_seed(self.seed, stage, epoch))
            self._perm = torch.randperm(self.set_sizes[stage], generator=generator)
            self._perm_key = (stage, epoch)
        start = position * global_batch + self.rank * self.batch_size
        indices = self._perm[start : start + self.batch_size]  # type: ignore[index]
        return BatchKey(step, stage, indices.sort().values)  # sorted: memory-map reads stay local

    def __iter__(self) -> Iterator[BatchKey]:
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1
