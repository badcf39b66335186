"""Timing, peak-memory and reporting helpers shared by the benchmark scripts.

Implementations are timed round-robin inside one process (each repetition runs every
implementation once), so machine noise hits all of them alike; we report medians and ratios
against the anchor measured in the same run.

- CPU: wall time with ``time.perf_counter``; peak memory from the profiler's allocation events.
- CUDA: CUDA events around each call after warm-up (the GPU's own clock, no host-side launch
  jitter), one synchronisation per sample; peak memory from ``torch.cuda.max_memory_allocated``.

Every script writes a results file (:mod:`depthq.results`: its tables, the raw figures, the
machine, date, commit and command); ``docs/results/`` holds the published ones, from which
``make results-docs`` generates the documentation's tables.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from depthq.results import ResultsFile, Table, provenance, write

#: Lines the profiler's native code writes to stderr at every profiling session (kineto's USDT
#: trace points, the CPU allocator's note about blocks allocated before profiling started).
NATIVE_NOISE = re.compile(r"^USDT:|Memory block of unknown size was allocated before the profiling")


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"``; a clear error when CUDA was asked for and is not there."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device "
                         f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    return torch.device(name)


def synchronize(device: torch.device | str = "cpu") -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_times(fns: dict[str, Callable[[], object]], reps: int, warmup: int | None = None,
                 device: torch.device | str = "cpu") -> dict[str, float]:
    """Median time in seconds of each callable, timed round-robin after ``warmup`` calls each
    (default 1 on CPU, 3 on CUDA, where the first calls also compile kernels)."""
    cuda = torch.device(device).type == "cuda"
    warmup = (3 if cuda else 1) if warmup is None else warmup
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if cuda:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                samples[name].append(start.elapsed_time(stop) / 1e3)
            else:
                start_s = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start_s)
    return {name: statistics.median(ts) for name, ts in samples.items()}


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop the profiler's per-session native stderr lines (:data:`NATIVE_NOISE`); anything
    else written to stderr meanwhile is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not NATIVE_NOISE.search(line):
                    print(line, file=sys.stderr)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by torch while ``fn`` runs, above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated before.
    CPU: the peak of the running sum of the profiler's allocation events (signed sizes in time
    order). Memory allocated before the call (inputs, parameters) is not counted.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        del result
        return torch.cuda.max_memory_allocated() - before
    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
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


def software(device: torch.device | str = "cpu") -> dict[str, str]:
    """Versions beyond torch and Python that the figures depend on (on CUDA: Triton)."""
    if torch.device(device).type != "cuda":
        return {}
    try:
        import triton

        return {"Triton": triton.__version__}
    except ImportError:
        return {"Triton": "not installed"}


def write_results(path: str | Path, *, title: str, tables: Sequence[Table], data: dict,
                  device: torch.device | str = "cpu", summary: str = "",
                  versions: dict[str, str] | None = None) -> Path:
    """The results as a :class:`depthq.results.ResultsFile` named after the file's stem, with the
    machine they were measured on (the GPU's name on CUDA), the date, the commit and this
    process's command line (atomic); ``versions`` adds library versions the figures depend on.
    Copy it into ``docs/results/`` to publish it."""
    cuda = torch.device(device).type == "cuda"
    results = ResultsFile(
        name=Path(path).stem, title=title, summary=summary, tables=tuple(tables), data=data,
        provenance=provenance(device="cuda" if cuda else None, software={**software(device), **(versions or {})}),
    )
    return write(path, results)


def print_tables(tables: Sequence[Table]) -> None:
    """Each table as Markdown under its caption, with its notes."""
    for table in tables:
        print(f"{table.caption}:\n\n{table.to_markdown()}\n")
