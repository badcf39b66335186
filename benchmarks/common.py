"""Timing, peak-memory and reporting helpers shared by the benchmark scripts.

Implementations are timed round-robin inside one process (each repetition runs every
implementation once), so machine noise hits all of them alike; we report medians and ratios
against the anchor measured in the same run.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from depthq.atomic import write_json as depthq_write_json


def median_times(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each callable, timed round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated by torch on the CPU while ``fn`` runs, above what was live before.

    Read from the profiler's allocation events (signed sizes in time order): the peak of their
    running sum. Memory allocated before the call (inputs, parameters) is not counted.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if getattr(e.device_type(), "name", "CPU") == "CPU":  # CPU allocations only
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def machine() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(path: str | Path, payload: dict) -> Path:
    """The results with the machine they were measured on (atomic, via depthq.io)."""
    return depthq_write_json(path, {"machine": machine(), **payload})
