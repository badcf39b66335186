"""Timing, peak-memory and reporting helpers shared by the benchmark scripts.

Implementations are timed round-robin inside one process (each repetition runs every
implementation once), so machine noise hits all of them alike; we report medians and ratios
against the anchor measured in the same run.

- CPU: wall time with ``time.perf_counter``; peak memory from the profiler's allocation events.
- CUDA: CUDA events around each call after warm-up (the GPU's own clock, no host-side launch
  jitter), one synchronisation per sample; peak memory from ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from depthq.atomic import write_json as depthq_write_json

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


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> dict[str, object]:
    info: dict[str, object] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "processor": cpu_model(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    return info


def provenance() -> dict[str, object]:
    """When, from which commit and by which command a result was measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "dirty": dirty, "command": " ".join(["python", *sys.argv])}


def write_json(path: str | Path, payload: dict, device: torch.device | str = "cpu") -> Path:
    """The results with the machine they were measured on and their provenance (atomic)."""
    return depthq_write_json(path, {"machine": machine(device), **provenance(), **payload})
