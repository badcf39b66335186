"""``depthq demo``: the main job on the built-in photos, DQ-AE next to VQ-VAE.

Trains a small DQ-AE and a VQ-VAE with identical network, data, seed and budget (only the
quantizer differs: M=4 codebooks of K=64 codes versus one codebook of M*K = 256 codes, the
same number of code vectors), evaluates both on the held-out test photos, and prints a
side-by-side table; the table, the run directories and the pictures go to the output folder.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from depthq.config import RunConfig, config_from_dict
from depthq.evaluate import figures
from depthq.evaluate.report import format_table, mi_panels, write_eval
from depthq.images import make_grid, save_png
from depthq.atomic import write_json

log = logging.getLogger(__name__)

#: The demo model: the official architecture, narrowed to train on 2 CPU cores in minutes.
DEMO_MODEL = {
    "channels": 64, "res_channels": 32, "res_blocks": 2, "coder_blocks": 2, "stride": 2,
    "codebook_sizes": [64, 64], "num_codebooks": 4, "code_dim": 16, "head": "dmol",
}
DEMO_STEPS = 1600
QUICK_STEPS = 60


def demo_config(quantizer: str, steps: int, batch_size: int = 32) -> RunConfig:
    model = dict(DEMO_MODEL, quantizer=quantizer)
    if quantizer == "vq":  # the same number of code vectors: one codebook of M*K codes
        model["codebook_sizes"] = [k * model["num_codebooks"] for k in model["codebook_sizes"]]
    return config_from_dict({
        "model": model,
        "data": {"name": "photos", "batch_size": batch_size, "val_fraction": 0.05, "max_val_images": 256},
        "train": {"steps": steps, "lr": 1e-3, "warmup_steps": min(100, steps // 10),
                  "val_every": max(steps // 3, 1), "checkpoint_every": max(steps // 3, 1), "seed": 0},
    })


def _fresh_dir(out: Path) -> Path:
    """``out``, or ``out-2``, ``out-3``... if it already holds results (nothing is overwritten)."""
    candidate, n = out, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = out.with_name(f"{out.name}-{n}")
    return candidate


EXTRA_ROWS = [
    ("code vectors per level", lambda r: " / ".join(
        str(lv["codebook_size"] * len(lv["entropy_nats"])) for lv in r["levels"])),
    ("training time (s)", lambda r: f"{r['train_seconds']:.0f}"),
]


def run_demo(out: str | os.PathLike = "results/demo", *, steps: int = DEMO_STEPS, quick: bool = False,
             batch_size: int = 32) -> dict:
    """Train and evaluate both models; returns the results and writes them to ``out``."""
    from depthq.train import train

    steps = QUICK_STEPS if quick else steps
    out = _fresh_dir(Path(out))
    out.mkdir(parents=True, exist_ok=True)
    print(f"depthq demo: DQ-AE vs VQ-VAE on the built-in photos ({steps} steps each) -> {out}")
    results, grids = {}, {}
    for label, quantizer in (("DQ-AE", "dq"), ("VQ-VAE", "vq")):
        config = demo_config(quantizer, steps, batch_size)
        start = time.perf_counter()
        summary = train(config, out / f"{quantizer}-run", description=f"training {label}")
        # the full report of `depthq eval`: eval.json, report.md and figures in <run>/eval-test/
        result, grid = write_eval(out / f"{quantizer}-run", return_grid=True)
        result["train_seconds"] = summary["train_seconds"]
        result["total_seconds"] = time.perf_counter() - start
        results[label], grids[label] = result, grid
    table = format_table(results, EXTRA_ROWS)
    first = next(iter(results.values()))
    note = (f"Test split: {first['images']} held-out {first['data']} patches ({first['dims']} dims each). "
            f"Prior of the 'empirical' rows: {first.get('prior', 'n/a')}.")
    originals = next(iter(grids.values()))[0]
    save_png(make_grid([originals, *(g[1] for g in grids.values())], scale=3), out / "test_reconstructions.png")
    panels = [p for name, r in results.items() for p in mi_panels(r, prefix=f"{name}, ")]
    figures.mi_matrices(panels, out / "mutual_information.png")
    write_json(out / "summary.json", {"results": results, "steps": steps})
    (out / "summary.md").write_text(
        f"# depthq demo\n\n{table}\n\n{note}\n\n![test reconstructions](test_reconstructions.png)\n"
        f"\nRows of the picture: originals, {', '.join(grids)} reconstructions.\n\n"
        f"![mutual information](mutual_information.png)\n\nFull reports: "
        + ", ".join(f"{q}-run/eval-test/report.md" for q in ("dq", "vq")) + "\n"
    )
    print()
    print(table)
    print()
    print(note)
    print(f"Pictures: {out / 'test_reconstructions.png'} (rows: originals, {', '.join(grids)}), "
          f"{out / 'mutual_information.png'}; full reports with figures: {out}/*-run/eval-test/report.md")
    return results


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and compare DQ-AE and VQ-VAE on the built-in photos",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/demo", help="results folder (a new one if it exists)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps per model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps each: a smoke test")
    p.set_defaults(func=lambda args: run_demo(args.out, steps=args.steps, quick=args.quick,
                                              batch_size=args.batch_size) and 0)
