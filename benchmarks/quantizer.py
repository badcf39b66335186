"""Quantizer benchmark: depthq vs vector-quantize-pytorch vs a naive per-codebook loop.

Forward+backward time and peak memory in one process, the nearest-code search throughput next
to torch's fp32 matrix product on the same shapes (on CUDA also the fused Triton search and the
torch search at several chunk budgets), and the peak memory of a training forward at N=16,384
vectors, M=4, D=32, K=8,192. Prints Markdown tables and writes JSON.

    python benchmarks/quantizer.py [--device cpu|cuda] [--precision fp32|bf16|fp16]
                                   [--reps 7] [--all-shapes] [--skip-search] [--out PATH]

``--precision`` runs the step under autocast with inputs of that dtype (as a bf16/fp16 encoder
would hand them over); the quantizers' distances stay fp32 in depthq either way.
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
from benchmarks.naive import NaiveDepthwise  # noqa: E402
from depthq import DepthwiseQuantizer  # noqa: E402
from depthq.quantize.search import (  # noqa: E402
    CPU_CHUNK_ELEMENTS,
    chunk_rows,
    default_chunk_elements,
    nearest_codes,
)
from depthq.results import Table  # noqa: E402

try:
    from vector_quantize_pytorch import VectorQuantize
except ImportError:  # optional extra: pip install depthq[bench]
    VectorQuantize = None

#: (B, H=W, M, D, K). The first three run everywhere; the last two (issue 10) need more
#: memory than a 24 GiB CPU machine has for vqp and the naive loop, so on CPU they run only
#: with --all-shapes.
CONFIGS = [(128, 16, 5, 64, 32), (128, 8, 8, 64, 512), (64, 16, 8, 32, 1024)]
LARGE_CONFIGS = [(64, 16, 4, 32, 8192), (256, 32, 8, 32, 1024)]
#: the memory target: N = 64 * 16 * 16 = 16,384 vectors, M=4, D=32, K=8,192
MEMORY_CONFIG = (64, 16, 4, 32, 8192)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: torch-search chunk budgets swept on CUDA (bytes of fp32 scores): 16 MiB (the CPU figure)
#: to 1 GiB, to choose depthq.quantize.search.CUDA_CHUNK_BYTES_CAP from data
CUDA_BUDGETS = [2**24, 2**26, 2**28, 2**30]
#: other tile/warp choices of the Triton kernel, timed next to its default (launch_config)
TRITON_ALTERNATIVES = {"triton-w8": {"num_warps": 8}, "triton-n128": {"BLOCK_N": 128, "num_warps": 8}}
MIB = 2**20
SUMMARY = (
    "Each timing is a training step of the quantizer alone (forward, loss, backward to the input), "
    "the median of the repetitions, timed round-robin in one process for three implementations: depthq "
    "at its defaults (EMA, dead-code re-initialisation on); vector-quantize-pytorch in its DQ-equivalent "
    "configuration (`heads=M, separate_codebook_per_head=True, codebook_dim=D, rotation_trick=False, "
    "decay=0.99`); and a naive loop over per-codebook modules with full distances and one-hot EMA, the "
    "structure of the official code. Peak memory is what torch allocated during the call."
)


def have_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def quantizers(m: int, d: int, k: int, device: torch.device) -> dict[str, torch.nn.Module]:
    """The implementations, same shapes, EMA decay 0.99, in training mode."""
    impls: dict[str, torch.nn.Module] = {
        "depthq": DepthwiseQuantizer(m, k, d, decay=0.99),
        "naive": NaiveDepthwise(m, k, d),
    }
    if device.type == "cuda" and have_triton():
        impls["depthq-triton"] = DepthwiseQuantizer(m, k, d, decay=0.99, search="triton")
    if VectorQuantize is not None:
        # The DQ-equivalent configuration (shared/environment.md): separate codebook per
        # head, no projection, no rotation trick, the paper's decay.
        impls["vqp"] = VectorQuantize(
            dim=m * d, codebook_size=k, heads=m, separate_codebook_per_head=True,
            codebook_dim=d, accept_image_fmap=True, rotation_trick=False, decay=0.99,
        )
    return {name: q.to(device).train() for name, q in impls.items()}


def step_fn(name: str, module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor,
            dtype: torch.dtype, backward: bool = True):
    """One training step of the quantizer alone: forward (under autocast unless fp32), loss,
    backward to the input."""
    autocast = (torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())

    def run():
        x.grad = None
        with autocast:
            if name.startswith("depthq"):
                out = module(x)
                q, loss = out.quantized, out.loss
            else:
                q, _, loss = module(x)
                loss = loss.sum()
        if backward:
            ((q * grad).float().sum() + loss).backward()
        return q

    return run


def bench_steps(configs, reps: int, device: torch.device, dtype: torch.dtype) -> list[dict]:
    rows = []
    for b, h, m, d, k in configs:
        torch.manual_seed(0)
        x = torch.randn(b, m * d, h, h, device=device).to(dtype).requires_grad_()
        grad = torch.randn_like(x)
        impls = quantizers(m, d, k, device)
        fns = {name: step_fn(name, q, x, grad, dtype) for name, q in impls.items()}
        times = median_times(fns, reps, device=device)
        memory = {name: peak_memory_bytes(fn, device) for name, fn in fns.items()}
        rows.append({"B": b, "HW": h, "M": m, "D": d, "K": k, "N": b * h * h,
                     "seconds": times, "peak_bytes": memory})
        print(f"  fwd+bwd B={b} {h}x{h} M={m} D={d} K={k}: "
              + ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in times.items()), flush=True)
        del impls, fns
    return rows


def bench_search(configs, reps: int, device: torch.device) -> list[dict]:
    """GFLOP/s of the search variants and of fp32 bmm on the same (M, N, D, K)."""
    rows = []
    cuda = device.type == "cuda"
    for b, h, m, d, k in configs:
        torch.manual_seed(0)
        n = b * h * h
        x = torch.randn(m, n, d, device=device)
        codes = torch.randn(m, k, d, device=device)
        codes_t = codes.transpose(1, 2)
        rows_per_chunk = min(n, chunk_rows(m, k, default_chunk_elements(device)))
        buf = torch.empty(m, rows_per_chunk, k, device=device)

        def chunked_matmul():
            for s in range(0, n, rows_per_chunk):
                e = min(s + rows_per_chunk, n)
                torch.bmm(x[:, s:e], codes_t, out=buf[:, : e - s])  # noqa: F821 (buf is deleted after the timing)

        fns = {
            "search": lambda: nearest_codes(x, codes),
            "matmul": lambda: torch.bmm(x, codes_t),
            "matmul_chunked": chunked_matmul,
        }
        if cuda:
            if have_triton():
                from depthq.quantize.triton_search import triton_nearest_codes

                fns["triton"] = lambda: nearest_codes(x, codes, search="triton")
                for name, config in TRITON_ALTERNATIVES.items():
                    fns[name] = lambda c=config: triton_nearest_codes(x, codes, **c)
            for budget in CUDA_BUDGETS:
                fns[f"search@{budget // MIB}MiB"] = (
                    lambda e=budget // 4: nearest_codes(x, codes, chunk_elements=e))
        times = median_times(fns, reps, device=device)
        del buf
        gflop = 2 * m * n * k * d / 1e9
        rows.append({"M": m, "N": n, "D": d, "K": k, "gflop": gflop,
                     "chunk_elements": default_chunk_elements(device),
                     "gflops": {name: gflop / t for name, t in times.items()}})
        print(f"  search M={m} N={n} D={d} K={k}: "
              + ", ".join(f"{name} {gflop / t:.0f}" for name, t in times.items()) + " GFLOP/s",
              flush=True)
    return rows


def bench_memory(device: torch.device, dtype: torch.dtype) -> dict:
    b, h, m, d, k = MEMORY_CONFIG
    torch.manual_seed(0)
    x = torch.randn(b, m * d, h, h, device=device).to(dtype).requires_grad_()
    grad = torch.randn_like(x)
    impls = quantizers(m, d, k, device)
    peak = {name: peak_memory_bytes(step_fn(name, q, x, grad, dtype, backward=False), device)
            for name, q in impls.items()}
    return {"B": b, "HW": h, "M": m, "D": d, "K": k, "N": b * h * h, "peak_bytes": peak}


def report(steps: list[dict], search: list[dict], memory: dict) -> list[Table]:
    """The step, search and memory tables."""
    names = [n for n in ("depthq", "depthq-triton", "vqp", "naive") if n in steps[0]["seconds"]]
    have_vqp = "vqp" in names
    headers = ["B, HxW, M, D, K"] + [f"{n} ms" for n in names]
    headers += [f"vqp / {n}" for n in names if n.startswith("depthq")] if have_vqp else []
    headers += ["naive / depthq"] + [f"{n} MiB" for n in names]
    rows = []
    for r in steps:
        t, mem = r["seconds"], r["peak_bytes"]
        row = [f"{r['B']}, {r['HW']}x{r['HW']}, {r['M']}, {r['D']}, {r['K']}"]
        row += [f"{t[n] * 1e3:.2f}" for n in names]
        row += [f"{t['vqp'] / t[n]:.2f}x" for n in names if n.startswith("depthq")] if have_vqp else []
        row += [f"{t['naive'] / t['depthq']:.2f}x"]
        row += [f"{mem[n] / MIB:.0f}" for n in names]
        rows.append(tuple(row))
    tables = [Table("Training step of the quantizer alone (forward, loss, backward to the input; median) "
                    "and its peak memory", tuple(headers), tuple(rows))]
    if search:
        variants = [v for v in search[0]["gflops"] if v not in ("matmul", "matmul_chunked")]
        rows = []
        for r in search:
            g = r["gflops"]
            rows.append((f"{r['M']}, {r['N']}, {r['D']}, {r['K']}", f"{r['gflop']:.2f}",
                         *(f"{g[v]:.0f}" for v in variants), f"{g['matmul']:.0f}",
                         f"{g['matmul_chunked']:.0f}",
                         *(f"{g[v] / g['matmul']:.0%}" for v in variants),
                         f"{g['search'] / g['matmul_chunked']:.0%}"))
        tables.append(Table(
            "Nearest-code search throughput, GFLOP/s (2*M*N*K*D / time), next to torch's fp32 matrix "
            "product on the same shapes",
            ("M, N, D, K", "GFLOP", *variants, "matmul (same shapes)", "matmul chunked",
             *(f"{v} / matmul" for v in variants), "search / chunked"), tuple(rows),
            notes=("`search` is the default torch path, `triton` the fused kernel (`triton-*`: other "
                   "tiles and warps), `search@X` the torch path with an X score budget; *matmul* is one "
                   "`bmm`, *matmul chunked* the same product in the search's chunks into a reused buffer.",)))
    p = memory["peak_bytes"]
    mem_names = [n for n in names if n in p]
    row = [f"N={memory['N']}, M={memory['M']}, D={memory['D']}, K={memory['K']}"]
    row += [f"{p[n] / MIB:.0f}" for n in mem_names]
    row += [f"{p['depthq'] / p['vqp']:.3f}"] if have_vqp else []
    tables.append(Table("Peak memory of a training forward",
                        ("config", *(f"{n} MiB" for n in mem_names), *(["depthq / vqp"] if have_vqp else [])),
                        (tuple(row),)))
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS),
                        help="autocast dtype of the step, and dtype of its input")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions (median); default 7 on CPU, 25 on CUDA")
    parser.add_argument("--all-shapes", action="store_true",
                        help="also the two large shapes on CPU (always on CUDA)")
    parser.add_argument("--skip-search", action="store_true",
                        help="leave out the search table (it is fp32 whatever --precision says)")
    parser.add_argument("--out", default=None, help="JSON path; default "
                        "benchmarks/results/quantizer[-DEVICE-PRECISION].json")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    dtype = PRECISIONS[args.precision]
    cuda = device.type == "cuda"
    reps = args.reps or (25 if cuda else 7)
    configs = CONFIGS + (LARGE_CONFIGS if cuda or args.all_shapes else [])
    suffix = "" if (args.device, args.precision) == ("cpu", "fp32") else f"-{args.device}-{args.precision}"
    out = args.out or f"benchmarks/results/quantizer{suffix}.json"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 matmul reference is fp32
    if VectorQuantize is None:
        print("vector-quantize-pytorch is not installed (pip install 'depthq[bench]'): "
              "its column is left out.")
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, {args.precision}, median of {reps}"
          + (f", triton {'on' if have_triton() else 'not installed'}" if cuda else ""))
    steps = bench_steps(configs, reps, device, dtype)
    search = [] if args.skip_search else bench_search(
        configs + ([] if MEMORY_CONFIG in configs else [MEMORY_CONFIG]), reps, device)
    memory = bench_memory(device, dtype)
    print()
    tables = report(steps, search, memory)
    print_tables(tables)
    data = {"device": args.device, "precision": args.precision, "reps": reps,
            "cpu_chunk_elements": CPU_CHUNK_ELEMENTS, "steps": steps, "search": search, "memory": memory}
    path = write_results(out, title=f"The quantizer: depthq, vector-quantize-pytorch and a naive loop "
                         f"({args.device}, {args.precision})", tables=tables, data=data, device=device,
                         summary=SUMMARY)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
