"""`depthq train` end to end next to the raw training step, same model and batch, one process.

The loop is the real ``depthq.train.train(...)`` on the built-in photos: Lightning, the data
module (batches built on the CPU, or gathered on the GPU), gradient clipping and the skip
decision, logging every ``train.log_every`` steps, the callbacks. It is timed from the start of
step ``--warmup`` to the start of step ``--warmup + --steps`` (a callback; on CUDA with a
synchronisation at both ends), so the first steps (compilation, cache warm-up) and the final
validation and checkpoint are left out. The raw step is ``benchmarks/model.py``'s: forward,
backward and fused Adam on one fixed batch, median of ``--reps``.

    python benchmarks/train_loop.py [--device cpu|cuda] [--precision fp32|bf16] [--preset demo]
                                    [--batch-size 32] [--steps 20] [--warmup 5] [--compile off|on|both]

Prints a table and writes JSON (default ``benchmarks/results/train_loop[-cuda].json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    median_times,
    print_tables,
    resolve_device,
    synchronize,
    write_results,
)
from benchmarks.model import PRECISIONS, make_step, resolve_channels_last, setting_name  # noqa: E402
from depthq.config import RunConfig, config_from_dict  # noqa: E402
from depthq.models import HierarchicalAutoencoder  # noqa: E402
from depthq.presets import MODELS  # noqa: E402
from depthq.results import Table  # noqa: E402
from depthq.train import train  # noqa: E402

LIGHTNING_PRECISION = {"fp32": "32", "bf16": "bf16-mixed"}


class StepClock(L.Callback):
    """Wall time from the start of step ``first`` to the start of step ``last``."""

    def __init__(self, first: int, last: int, device: torch.device) -> None:
        self.first, self.last, self.device = first, last, device
        self.started: float | None = None
        self.seconds: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in (self.first, self.last):
            synchronize(self.device)  # the queued work of the steps before belongs to them
            now = time.perf_counter()
            if trainer.global_step == self.first:
                self.started = now
            else:
                self.seconds = now - self.started


def run_config(preset: str, batch_size: int, steps: int, precision: str, channels_last: bool,
               device: torch.device, compile_: bool) -> RunConfig:
    model = {"preset": preset}
    return config_from_dict({
        "model": model,
        "data": {"name": "photos", "batch_size": batch_size, "max_val_images": 64},
        "train": {"steps": steps, "precision": LIGHTNING_PRECISION[precision], "channels_last": channels_last,
                  "accelerator": "gpu" if device.type == "cuda" else "cpu", "val_every": steps,
                  "checkpoint_every": steps, "progress": False, "compile": compile_, "seed": 0},
    })


def time_loop(config: RunConfig, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds of ``steps`` steps of ``depthq train`` after ``warmup`` steps."""
    clock = StepClock(warmup, warmup + steps, device)
    with tempfile.TemporaryDirectory(prefix="depthq-train-loop-") as run_dir:
        train(config, Path(run_dir) / "run", callbacks=[clock])
    if clock.seconds is None:
        raise RuntimeError("the training loop ended before the timed steps")
    return clock.seconds


def time_raw_step(config: RunConfig, precision: str, channels_last: bool, device: torch.device,
                  reps: int) -> float:
    """Median seconds of benchmarks/model.py's step on one real batch of the run's data."""
    dm = config.datamodule()
    dm.prepare_data()
    x = next(iter(dm.train_dataloader(on_device=False))).to(device)
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(config.model).train()
    step = make_step(model, x, PRECISIONS[precision], channels_last)
    return median_times({"step": step}, reps, device=device)["step"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="auto: with bf16 only")
    parser.add_argument("--preset", default="demo", choices=sorted(MODELS),
                        help="demo: the model of `depthq demo`; else a model preset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the loop")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timing starts")
    parser.add_argument("--reps", type=int, default=None, help="raw-step repetitions (median); "
                        "default --steps")
    parser.add_argument("--compile", default="off", choices=["off", "on", "both"],
                        help="train.compile of the loop (the raw step is never compiled)")
    parser.add_argument("--out", default=None, help="JSON path; default benchmarks/results/train_loop[-cuda].json")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    cuda = device.type == "cuda"
    cl = resolve_channels_last(args.channels_last, args.precision)
    setting = setting_name(args.precision, cl)
    total = args.warmup + args.steps + 1  # the last step (validation, checkpoint) is not timed
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, preset {args.preset}, batch {args.batch_size}, {setting}, "
          f"{args.steps} timed steps after {args.warmup}")
    configs = {c: run_config(args.preset, args.batch_size, total, args.precision, cl, device, c) for c in compiles}
    raw = time_raw_step(configs[compiles[0]], args.precision, cl, device, args.reps or args.steps)
    raw_ips = args.batch_size / raw
    print(f"  raw step: {raw_ips:.1f} img/s", flush=True)
    rows, results = [], []
    for c, config in configs.items():
        seconds = time_loop(config, args.warmup, args.steps, device)
        ips = args.steps * args.batch_size / seconds
        print(f"  depthq train{' (compiled)' if c else ''}: {ips:.1f} img/s", flush=True)
        results.append({"compile": c, "seconds": seconds, "images_per_s": ips, "loop_over_raw": ips / raw_ips})
        rows.append([args.preset, f"{HierarchicalAutoencoder(config.model).num_parameters() / 1e6:.2f}M",
                     args.device, setting, str(args.batch_size), "on" if c else "off", f"{raw_ips:.1f}",
                     f"{ips:.1f}", f"{ips / raw_ips:.0%}", f"{args.steps / seconds:.2f}"])
    print()
    table = Table("`depthq train` end to end next to the raw training step (forward, backward and Adam on one "
                  "batch, median), images/s",
                  ("preset", "params", "device", "precision", "batch", "compile", "raw step img/s",
                   "depthq train img/s", "train / raw", "train steps/s"), tuple(map(tuple, rows)),
                  notes=(f"{args.steps} timed steps after {args.warmup}; the final validation and checkpoint "
                         "are not timed.",))
    print_tables([table])
    out = args.out or f"benchmarks/results/train_loop{'-cuda' if cuda else ''}.json"
    payload = {"preset": args.preset, "device": args.device, "precision": args.precision, "channels_last": cl,
               "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
               "raw_step_seconds": raw, "raw_images_per_s": raw_ips, "loops": results}
    title = f"`depthq train` end to end ({args.device}, {setting}, preset {args.preset})"
    print(f"wrote {write_results(out, title=title, tables=[table], data=payload, device=device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
