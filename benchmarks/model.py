"""DQ-AE training-step benchmark: depthq vs the naive per-codebook network, in one process.

The naive network is the same architecture with one 1x1 projection and one quantizer module
per codebook looped in Python (the official code's structure, ``benchmarks/naive.py``). Both
are timed in two settings: fp32 with contiguous (NCHW) tensors, as the official code runs on a
CPU, and bf16 autocast with channels_last tensors, depthq's training default on CPUs with native
bf16 (AMX / AVX512-BF16). A step is forward + backward + Adam update on uint8 32x32 images.

    python benchmarks/model.py [--batch 32] [--reps 5] [--presets small official]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_times, peak_memory_bytes, write_json  # noqa: E402
from depthq.tables import markdown_table  # noqa: E402
from benchmarks.naive import naive_autoencoder  # noqa: E402
from depthq.models import HierarchicalAutoencoder, preset  # noqa: E402

SETTINGS = {"fp32": (torch.float32, False), "bf16+CL": (torch.bfloat16, True)}
MIB = 2**20


def make_step(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, channels_last: bool):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast("cpu", dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            out = model(x)
        out.loss.backward()
        optimizer.step()

    return step


def bench_preset(name: str, batch: int, reps: int, head: str) -> dict:
    config = preset(name, head=head)
    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch, config.image_channels, 32, 32), dtype=torch.uint8)
    steps = {}
    params = {}
    for impl, build in (("depthq", HierarchicalAutoencoder), ("naive", naive_autoencoder)):
        for setting, (dtype, cl) in SETTINGS.items():
            torch.manual_seed(0)
            model = build(config).train()
            params[impl] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            steps[f"{impl} {setting}"] = make_step(model, x, dtype, cl)
    seconds = median_times(steps, reps)
    memory = {key: peak_memory_bytes(step) for key, step in steps.items()}
    result = {"preset": name, "batch": batch, "head": head, "parameters": params,
              "images_per_s": {k: batch / t for k, t in seconds.items()},
              "peak_bytes": memory}
    print(f"  {name}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in result["images_per_s"].items()),
          flush=True)
    return result


def report(results: list[dict]) -> str:
    keys = [f"{i} {s}" for i in ("depthq", "naive") for s in SETTINGS]
    rows = []
    for r in results:
        ips, mem = r["images_per_s"], r["peak_bytes"]
        rows.append(
            [r["preset"], f"{r['parameters']['depthq'] / 1e6:.2f}M"]
            + [f"{ips[k]:.1f}" for k in keys]
            + [f"{ips['depthq fp32'] / ips['naive fp32']:.2f}x",
               f"{ips['depthq bf16+CL'] / ips['naive bf16+CL']:.2f}x",
               f"{ips['depthq bf16+CL'] / ips['naive fp32']:.2f}x"]
            + [f"{mem[k] / MIB:.0f}" for k in keys]
        )
    headers = (["preset", "params"] + [f"{k} img/s" for k in keys]
               + ["depthq/naive fp32", "depthq/naive bf16+CL", "depthq bf16+CL / naive fp32"]
               + [f"{k} MiB" for k in keys])
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--head", default="dmol")
    parser.add_argument("--presets", nargs="+", default=["small", "official"])
    parser.add_argument("--out", default="benchmarks/results/model.json")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"32x32, head {args.head}")
    for name in ("official", "paper-22m"):
        n = HierarchicalAutoencoder(preset(name, head=args.head)).num_parameters()
        print(f"  parameters of the {name!r} preset: {n:,}")
    results = [bench_preset(name, args.batch, args.reps, args.head) for name in args.presets]
    print()
    print("Training step (forward + backward + Adam), images/s (median), peak memory of a step:")
    print()
    print(report(results))
    print(f"\nwrote {write_json(args.out, {'results': results})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
