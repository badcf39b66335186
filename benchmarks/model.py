"""DQ-AE training-step benchmark: depthq vs the naive per-codebook network, in one process.

The naive network is the same architecture with one 1x1 projection and one quantizer module
per codebook looped in Python (the official code's structure, ``benchmarks/naive.py``). Both
are timed in each precision setting: fp32 with contiguous (NCHW) tensors, as the official code
runs on a CPU, and bf16 autocast with channels_last tensors, depthq's training default on GPUs
and on CPUs with native bf16 (AMX / AVX512-BF16). A step is forward + backward + Adam update
(fused where torch has the kernel, as ``depthq train`` uses it) on uint8 images.

    python benchmarks/model.py [--device cpu|cuda] [--precision fp32 bf16] [--channels-last auto|on|off]
                               [--batch 32] [--image-size 32] [--reps N] [--presets small official]

On CUDA the step is timed with CUDA events after warm-up and its peak memory read with
``torch.cuda.max_memory_allocated`` (``benchmarks/common.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    median_times,
    peak_memory_bytes,
    print_tables,
    resolve_device,
    write_results,
)
from benchmarks.naive import naive_autoencoder  # noqa: E402
from depthq.models import HierarchicalAutoencoder, ModelConfig, preset  # noqa: E402
from depthq.results import Table  # noqa: E402

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
MIB = 2**20


def setting_name(precision: str, channels_last: bool) -> str:
    """"fp32", "bf16+CL", ...: a precision and whether tensors are channels_last."""
    return precision + ("+CL" if channels_last else "")


def resolve_channels_last(choice: str, precision: str) -> bool:
    """"auto": channels_last with mixed precision only (depthq's training default; fp32
    channels_last was measured slower on CPU)."""
    return precision != "fp32" if choice == "auto" else choice == "on"


def adam(params) -> torch.optim.Optimizer:
    """Adam as ``depthq train`` runs it: fused where torch has the kernel for the device."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=2e-4, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=2e-4)


def make_step(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, channels_last: bool):
    """One training step of ``model`` on ``x`` (forward, backward, Adam), on x's device."""
    model = model.to(x.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = adam(model.parameters())

    def step():
        optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            out = model(x)
        out.loss.backward()
        optimizer.step()

    return step


def bench_preset(name: str | ModelConfig, batch: int, reps: int, head: str, device: torch.device,
                 settings: dict[str, tuple[torch.dtype, bool]], image_size: int = 32) -> dict:
    config = preset(name, head=head) if isinstance(name, str) else name
    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch, config.image_channels, image_size, image_size), dtype=torch.uint8,
                      device=device)
    steps = {}
    params = {}
    for impl, build in (("depthq", HierarchicalAutoencoder), ("naive", naive_autoencoder)):
        for setting, (dtype, cl) in settings.items():
            torch.manual_seed(0)
            model = build(config).train()
            params[impl] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            steps[f"{impl} {setting}"] = make_step(model, x, dtype, cl)
    seconds = median_times(steps, reps, device=device)
    memory = {key: peak_memory_bytes(step, device) for key, step in steps.items()}
    result = {"preset": name if isinstance(name, str) else "custom", "batch": batch, "image_size": image_size,
              "head": head, "device": device.type, "settings": list(settings), "parameters": params,
              "images_per_s": {k: batch / t for k, t in seconds.items()}, "peak_bytes": memory}
    print(f"  {result['preset']}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in result["images_per_s"].items()),
          flush=True)
    return result


def report(results: list[dict]) -> Table:
    settings = results[0]["settings"]
    keys = [f"{i} {s}" for i in ("depthq", "naive") for s in settings]
    ratios = [(f"depthq/naive {s}", f"depthq {s}", f"naive {s}") for s in settings]
    if "fp32" in settings and len(settings) > 1:  # depthq's mixed-precision default vs the official code
        ratios += [(f"depthq {s} / naive fp32", f"depthq {s}", "naive fp32") for s in settings if s != "fp32"]
    rows = []
    for r in results:
        ips, mem = r["images_per_s"], r["peak_bytes"]
        rows.append(tuple(
            [r["preset"], f"{r['parameters']['depthq'] / 1e6:.2f}M"]
            + [f"{ips[k]:.1f}" for k in keys]
            + [f"{ips[a] / ips[b]:.2f}x" for _, a, b in ratios]
            + [f"{mem[k] / MIB:.0f}" for k in keys]
        ))
    headers = (["preset", "params"] + [f"{k} img/s" for k in keys] + [name for name, _, _ in ratios]
               + [f"{k} MiB" for k in keys])
    return Table("Training step (forward, backward, Adam), images/s (median), and peak memory of a step",
                 tuple(headers), tuple(rows),
                 notes=("*fp32*: NCHW tensors, as the official code runs on a CPU; *bf16+CL*: bf16 autocast with "
                        "channels_last tensors (depthq's training default on CPUs with native bf16). The naive "
                        "network has the same architecture and weights, with one 1x1 projection and one "
                        "quantizer module per codebook looped in Python (the official code's structure).",))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=sorted(PRECISIONS),
                        help="settings to time (each with --channels-last)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="auto: with bf16 only")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (median); default 5 on "
                        "CPU, 20 on CUDA")
    parser.add_argument("--head", default="dmol")
    parser.add_argument("--presets", nargs="+", default=["small", "official"])
    parser.add_argument("--out", default=None, help="JSON path; default benchmarks/results/model[-cuda].json")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    cuda = device.type == "cuda"
    reps = args.reps or (20 if cuda else 5)
    settings = {}
    for precision in args.precision:
        cl = resolve_channels_last(args.channels_last, precision)
        settings[setting_name(precision, cl)] = (PRECISIONS[precision], cl)
    out = args.out or f"benchmarks/results/model{'-cuda' if cuda else ''}.json"
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, {args.image_size}x{args.image_size}, "
          f"head {args.head}, median of {reps}")
    for name in ("official", "paper-22m"):
        n = HierarchicalAutoencoder(preset(name, head=args.head)).num_parameters()
        print(f"  parameters of the {name!r} preset: {n:,}")
    results = [bench_preset(name, args.batch, reps, args.head, device, settings, args.image_size)
               for name in args.presets]
    print()
    table = report(results)
    print_tables([table])
    title = f"The DQ-AE training step: depthq and a per-codebook loop ({args.device}, batch {args.batch})"
    path = write_results(out, title=title, tables=[table], data={"reps": reps, "results": results}, device=device)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
