"""Quantizer benchmark: depthq vs vector-quantize-pytorch vs a naive per-codebook loop.

Forward+backward time and peak memory in one process, the nearest-code search throughput next
to torch's matrix product on the same shapes, and the peak memory of a training forward at
N=16,384 vectors, M=4, D=32, K=8,192. Prints Markdown tables and writes JSON.

    python benchmarks/quantizer.py [--reps 7] [--out benchmarks/results/quantizer.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_times, peak_memory_bytes, write_json  # noqa: E402
from depthq.tables import markdown_table  # noqa: E402
from benchmarks.naive import NaiveDepthwise  # noqa: E402
from depthq import DepthwiseQuantizer  # noqa: E402
from depthq.quantize.search import chunk_rows, nearest_codes  # noqa: E402

try:
    from vector_quantize_pytorch import VectorQuantize
except ImportError:  # optional extra: pip install depthq[bench]
    VectorQuantize = None

#: (B, H=W, M, D, K) from the issue
CONFIGS = [(128, 16, 5, 64, 32), (128, 8, 8, 64, 512), (64, 16, 8, 32, 1024)]
#: the memory target: N = 64 * 16 * 16 = 16,384 vectors, M=4, D=32, K=8,192
MEMORY_CONFIG = (64, 16, 4, 32, 8192)
MIB = 2**20


def quantizers(m: int, d: int, k: int) -> dict[str, torch.nn.Module]:
    """The three implementations, same shapes, EMA decay 0.99, in training mode."""
    impls: dict[str, torch.nn.Module] = {
        "depthq": DepthwiseQuantizer(m, k, d, decay=0.99),
        "naive": NaiveDepthwise(m, k, d),
    }
    if VectorQuantize is not None:
        # The DQ-equivalent configuration (shared/environment.md): separate codebook per
        # head, no projection, no rotation trick, the paper's decay.
        impls["vqp"] = VectorQuantize(
            dim=m * d, codebook_size=k, heads=m, separate_codebook_per_head=True,
            codebook_dim=d, accept_image_fmap=True, rotation_trick=False, decay=0.99,
        )
    return {name: q.train() for name, q in impls.items()}


def step_fn(name: str, module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor,
            backward: bool = True):
    """One training step of the quantizer alone: forward, loss, backward to the input."""

    def run():
        x.grad = None
        if name == "depthq":
            out = module(x)
            q, loss = out.quantized, out.loss
        else:
            q, _, loss = module(x)
            loss = loss.sum()
        if backward:
            ((q * grad).sum() + loss).backward()
        return q

    return run


def bench_steps(reps: int) -> list[dict]:
    rows = []
    for b, h, m, d, k in CONFIGS:
        torch.manual_seed(0)
        x = torch.randn(b, m * d, h, h, requires_grad=True)
        grad = torch.randn_like(x)
        impls = quantizers(m, d, k)
        fns = {name: step_fn(name, q, x, grad) for name, q in impls.items()}
        times = median_times(fns, reps)
        memory = {name: peak_memory_bytes(fn) for name, fn in fns.items()}
        rows.append({"B": b, "HW": h, "M": m, "D": d, "K": k, "N": b * h * h,
                     "seconds": times, "peak_bytes": memory})
        print(f"  fwd+bwd B={b} {h}x{h} M={m} D={d} K={k}: "
              + ", ".join(f"{n} {t * 1e3:.1f} ms" for n, t in times.items()), flush=True)
    return rows


def bench_search(reps: int) -> list[dict]:
    rows = []
    for b, h, m, d, k in [*CONFIGS, MEMORY_CONFIG]:
        torch.manual_seed(0)
        n = b * h * h
        x = torch.randn(m, n, d)
        codes = torch.randn(m, k, d)
        codes_t = codes.transpose(1, 2)
        rows_per_chunk = min(n, chunk_rows(m, k, None))
        buf = torch.empty(m, rows_per_chunk, k)

        def chunked_matmul():
            for s in range(0, n, rows_per_chunk):
                e = min(s + rows_per_chunk, n)
                torch.bmm(x[:, s:e], codes_t, out=buf[:, : e - s])

        times = median_times(
            {
                "search": lambda: nearest_codes(x, codes),
                "matmul": lambda: torch.bmm(x, codes_t),
                "matmul_chunked": chunked_matmul,
            },
            reps,
        )
        gflop = 2 * m * n * k * d / 1e9
        rows.append({"M": m, "N": n, "D": d, "K": k, "gflop": gflop,
                     "gflops": {name: gflop / t for name, t in times.items()}})
    return rows


def bench_memory() -> dict:
    b, h, m, d, k = MEMORY_CONFIG
    torch.manual_seed(0)
    x = torch.randn(b, m * d, h, h, requires_grad=True)
    grad = torch.randn_like(x)
    impls = quantizers(m, d, k)
    peak = {name: peak_memory_bytes(step_fn(name, q, x, grad, backward=False))
            for name, q in impls.items()}
    return {"B": b, "HW": h, "M": m, "D": d, "K": k, "N": b * h * h, "peak_bytes": peak}


def report(steps: list[dict], search: list[dict], memory: dict) -> str:
    have_vqp = VectorQuantize is not None
    names = ["depthq", "vqp", "naive"] if have_vqp else ["depthq", "naive"]
    headers = ["B, HxW, M, D, K"] + [f"{n} ms" for n in names]
    headers += ["vqp / depthq"] if have_vqp else []
    headers += ["naive / depthq"] + [f"{n} MiB" for n in names]
    rows = []
    for r in steps:
        t, mem = r["seconds"], r["peak_bytes"]
        row = [f"{r['B']}, {r['HW']}x{r['HW']}, {r['M']}, {r['D']}, {r['K']}"]
        row += [f"{t[n] * 1e3:.1f}" for n in names]
        row += [f"{t['vqp'] / t['depthq']:.2f}x"] if have_vqp else []
        row += [f"{t['naive'] / t['depthq']:.2f}x"]
        row += [f"{mem[n] / MIB:.0f}" for n in names]
        rows.append(row)
    out = ["Forward+backward of the quantizer (median), peak memory of the step:", "",
           markdown_table(headers, rows), ""]
    rows = [[f"{r['M']}, {r['N']}, {r['D']}, {r['K']}", f"{r['gflop']:.2f}",
             f"{r['gflops']['search']:.0f}", f"{r['gflops']['matmul']:.0f}",
             f"{r['gflops']['matmul_chunked']:.0f}",
             f"{r['gflops']['search'] / r['gflops']['matmul']:.0%}",
             f"{r['gflops']['search'] / r['gflops']['matmul_chunked']:.0%}"] for r in search]
    out += ["Nearest-code search throughput (GFLOP/s = 2*M*N*K*D / time):", "",
            markdown_table(["M, N, D, K", "GFLOP", "depthq search", "matmul (same shapes)",
                            "matmul chunked", "search / matmul", "search / chunked"], rows), ""]
    p = memory["peak_bytes"]
    row = [f"N={memory['N']}, M={memory['M']}, D={memory['D']}, K={memory['K']}"]
    row += [f"{p[n] / MIB:.0f}" for n in names]
    row += [f"{p['depthq'] / p['vqp']:.3f}"] if have_vqp else []
    out += ["Peak memory of a training forward:", "",
            markdown_table(["config"] + [f"{n} MiB" for n in names]
                           + (["depthq / vqp"] if have_vqp else []), [row])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--out", default="benchmarks/results/quantizer.json")
    args = parser.parse_args(argv)
    if VectorQuantize is None:
        print("vector-quantize-pytorch is not installed (pip install 'depthq[bench]'): "
              "its column is left out.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    steps = bench_steps(args.reps)
    search = bench_search(args.reps)
    memory = bench_memory()
    print()
    print(report(steps, search, memory))
    path = write_json(args.out, {"steps": steps, "search": search, "memory": memory})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
