"""``depthq demo``: the main job on the built-in photos, DQ-AE next to VQ-VAE.

Trains a small DQ-AE and a VQ-VAE with identical network, data, seed and budget (only the
quantizer differs: M=4 codebooks of K=64 codes versus one codebook of M*K = 256 codes, the
same number of code vectors), evaluates both on the held-out test photos, and prints a
side-by-side table; the table, the run directories and the pictures go to the output folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from depthq.atomic import write_json, write_text
from depthq.config import RunConfig, config_from_dict
from depthq.evaluate import figures
from depthq.evaluate.report import format_table, mi_panels, sample_reconstructions, write_eval
from depthq.evaluate.result import EvalOptions, EvalResult
from depthq.train.summary import TrainSummary

log = logging.getLogger(__name__)

#: The demo model: the official architecture, narrowed to train on 2 CPU cores in minutes.
DEMO_MODEL = {
    "channels": 64, "res_channels": 32, "res_blocks": 2, "coder_blocks": 2, "stride": 2,
    "codebook_sizes": [64, 64], "num_codebooks": 4, "code_dim": 16, "head": "dmol",
}
DEMO_STEPS = 1600
QUICK_STEPS = 60
MODELS = (("DQ-AE", "dq"), ("VQ-VAE", "vq"))


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


@dataclass
class DemoRun:
    """One model of the demo: its training summary and its test evaluation."""

    label: str
    config: RunConfig
    summary: TrainSummary
    result: EvalResult


def run_demo(out: str | os.PathLike = "results/demo", *, steps: int = DEMO_STEPS, quick: bool = False,
             batch_size: int = 32) -> dict[str, DemoRun]:
    """Train and evaluate both models; returns them by label and writes them to ``out``."""
    import torch

    from depthq.train import train

    steps = QUICK_STEPS if quick else steps
    configs = {label: demo_config(quantizer, steps, batch_size) for label, quantizer in MODELS}  # ConfigError first
    out = _fresh_dir(Path(out))
    out.mkdir(parents=True, exist_ok=True)
    print(f"depthq demo: DQ-AE vs VQ-VAE on the built-in photos ({steps} steps each) -> {out}")
    options = EvalOptions(device="cuda" if torch.cuda.is_available() else "cpu")
    runs, pictures = {}, {}
    for label, quantizer in MODELS:
        run_dir = out / f"{quantizer}-run"
        summary = train(configs[label], run_dir, description=f"training {label}")
        # the full report of `depthq eval`: eval.json, report.md and figures in <run>/eval-test/
        report = write_eval(run_dir, options)
        runs[label] = DemoRun(label, configs[label], summary, report.result)
        pictures[label] = sample_reconstructions(report.evaluation)
    results = {label: run.result for label, run in runs.items()}
    table = format_table(results, [
        ("code vectors per level", [" / ".join(str(lv.code_vectors) for lv in r.levels) for r in results.values()]),
        ("training time (s)", [f"{run.summary.train_seconds:.0f}" for run in runs.values()]),
    ])
    first = next(iter(results.values()))
    empirical = first.rate("empirical")
    note = (f"Test split: {first.images} held-out {first.data} patches ({first.dims} dims each). "
            f"Prior of the 'empirical' rows: {empirical.description if empirical else 'not fitted'}.")
    originals = next(iter(pictures.values()))[0]
    figures.labelled_rows([originals, *(p[2] for p in pictures.values())],
                          ["test originals", *(f"{label} reconstructions" for label in pictures)],
                          out / "test_reconstructions.png",
                          title="Held-out test photos and their reconstructions (the mean of p(x|z))")
    panels = [p for name, r in results.items() for p in mi_panels(r, prefix=f"{name}, ")]
    figures.mi_matrices(panels, out / "mutual_information.png")
    write_json(out / "summary.json", {
        "schema": "depthq.demo", "schema_version": 1, "steps": steps,
        "runs": {label: {"train": run.summary.to_dict(), "eval": run.result.to_dict()} for label, run in runs.items()},
    })
    write_text(out / "summary.md",
               f"# depthq demo\n\n{table}\n\n{note}\n\n![test reconstructions](test_reconstructions.png)\n"
               f"\nRows of the picture: test originals, {', '.join(pictures)} reconstructions.\n\n"
               f"![mutual information](mutual_information.png)\n\nFull reports: "
               + ", ".join(f"{q}-run/eval-test/report.md" for _, q in MODELS) + "\n")
    print()
    print(table)
    print()
    print(note)
    print(f"Pictures: {out / 'test_reconstructions.png'} (rows: originals, {', '.join(pictures)}), "
          f"{out / 'mutual_information.png'}; full reports with figures: {out}/*-run/eval-test/report.md")
    return runs


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and compare DQ-AE and VQ-VAE on the built-in photos",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/demo", help="results folder (a new one if it exists)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps per model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps each: a smoke test")
    p.set_defaults(func=lambda args: run_demo(args.out, steps=args.steps, quick=args.quick,
                                              batch_size=args.batch_size) and 0)
