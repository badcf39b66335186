"""``depthq demo``: the main job on real photos, DQ-AE next to VQ-VAE, over several seeds.

Trains a small DQ-AE and a VQ-VAE with identical network, data, recipe and budget (only the
quantizer differs: M=4 codebooks of K=64 codes versus one codebook of M*K = 256 codes, the
same number of code vectors), each with several seeds; fits a learned prior over the codes of
the first seed's models; evaluates every run on the held-out test scenes next to PNG, WebP and
JPEG on the same images; and prints one table with the mean and spread over seeds and a verdict
that says whether the difference is larger than that spread. The table, the run directories
and the pictures go to the output folder.

Data: the ``scenes`` photo set (48 scenes, split by scene) when its Debian packages are
installed (``make scenes``), else the 11 bundled photos, with a message saying which ran.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from depthq.atomic import write_json, write_text
from depthq.codec import CodecSection
from depthq.config import RunConfig
from depthq.data.scenes import choose_photo_set
from depthq.errors import UsageError
from depthq.evaluate import figures
from depthq.evaluate.anchor_section import AnchorSection
from depthq.evaluate.report import format_table, mi_panels
from depthq.evaluate.result import EvalOptions, EvalResult
from depthq.experiments.common import Aggregate, aggregate
from depthq.experiments.recipe import recipe_config
from depthq.presets import MODELS as MODEL_PRESETS
from depthq.presets import RECOMMENDED, experiment_preset
from depthq.prior.config import load_prior_config
from depthq.runs import sample_reconstructions, train_prior, write_eval
from depthq.tables import markdown_table
from depthq.train import train
from depthq.train.summary import TrainSummary

log = logging.getLogger(__name__)

#: the demo's budgets (default, quick): depthq.presets.EXPERIMENTS["demo"]
DEFAULT = experiment_preset("demo", "default")
QUICK = experiment_preset("demo", "quick")
DEMO_STEPS, DEMO_SEEDS, QUICK_STEPS = DEFAULT["steps"], tuple(DEFAULT["seeds"]), QUICK["steps"]
LEVELS = len(MODEL_PRESETS["demo"].values["codebook_sizes"])
MODELS = (("DQ-AE", "dq"), ("VQ-VAE", "vq"))


def demo_config(quantizer: str, steps: int, batch_size: int = 32, *, seed: int = 0, data: str = "photos") -> RunConfig:
    """The demo's run config: the demo network trained with the recommended recipe."""
    config = recipe_config(RECOMMENDED, quantizer, steps=steps, batch_size=batch_size, seed=seed, data=data)
    every = max(steps // 3, 1)  # three validations: training curves in each run's report
    return dataclasses.replace(config, train=dataclasses.replace(config.train, val_every=every, checkpoint_every=every))


def _fresh_dir(out: Path) -> Path:
    """``out``, or ``out-2``, ``out-3``... if it already holds results (nothing is overwritten)."""
    candidate, n = out, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = out.with_name(f"{out.name}-{n}")
    return candidate


@dataclass
class DemoRun:
    """One trained and evaluated model of the demo."""

    label: str
    seed: int
    config: RunConfig
    summary: TrainSummary
    result: EvalResult


def code_rate_bpp(run: DemoRun) -> float:
    """The codes' rate in bits per pixel under the empirical prior (uniform if none was fitted)."""
    return run.result.code_rate_bpp(run.config.model.image_channels)


def _anchor_section(result: EvalResult) -> AnchorSection | None:
    """The result's anchors section (``depthq eval --anchors``), or None."""
    section = result.anchors
    if section is not None and not isinstance(section, AnchorSection):
        raise TypeError(f"expected the anchors section to be an AnchorSection, got {type(section).__name__}")
    return section


def _codec_section(result: EvalResult) -> CodecSection | None:
    """The result's codec section (``depthq eval --codec``), or None."""
    section = result.codec
    if section is not None and not isinstance(section, CodecSection):
        raise TypeError(f"expected the codec section to be a CodecSection, got {type(section).__name__}")
    return section


def _anchor_psnr(run: DemoRun, codec: str) -> float:
    anchors = _anchor_section(run.result)
    if anchors is None:
        return math.nan
    bpp = code_rate_bpp(run)
    value = anchors.jpeg_at(bpp)[1] if codec == "JPEG" else anchors.webp_at(bpp)
    return math.nan if value.extrapolated else value.value


def _lossless(run: DemoRun, codec: str) -> float:
    anchors = _anchor_section(run.result)
    return math.nan if anchors is None else anchors.anchors.lossless_anchor(codec).bits_per_dim


#: (label, digits, figure of one run) of the demo table
FIGURES = (
    ("test PSNR (dB) of the mean reconstruction", 2, lambda r: r.result.psnr),
    ("JPEG PSNR (dB) at the model's code rate", 2, lambda r: _anchor_psnr(r, "JPEG")),
    ("WebP PSNR (dB) at the model's code rate", 2, lambda r: _anchor_psnr(r, "WebP")),
    *(
        (
            f"colour bias {channel} (levels, mean abs. per-patch mean error)",
            1,
            lambda r, c=c: (
                math.nan if not r.result.colour_bias or c >= len(r.result.colour_bias) else r.result.colour_bias[c]
            ),
        )
        for c, channel in enumerate("RGB")
    ),
    ("code rate, bits/pixel (empirical prior)", 3, code_rate_bpp),
    ("distortion bits/dim (paper convention)", 3, lambda r: r.result.distortion),
    ("total bits/dim, uniform prior", 3, lambda r: r.result.total("uniform")),
    ("total bits/dim, empirical prior", 3, lambda r: r.result.total("empirical") or math.nan),
    ("PNG bits/dim (one file per image)", 3, lambda r: _lossless(r, "PNG")),
    ("WebP-lossless bits/dim (one file per image)", 3, lambda r: _lossless(r, "WebP lossless")),
    ("smallest codebook perplexity / K", 3, lambda r: r.result.min_perplexity_fraction),
    *(
        (
            f"information per position / capacity, level {i}",
            3,
            lambda r, i=i: r.result.levels[i].information_fraction,
        )
        for i in range(LEVELS)
    ),
    ("training time (s)", 0, lambda r: r.summary.train_seconds),
)
#: figures the verdict compares: (label, higher is better)
VERDICT = (
    ("test PSNR (dB) of the mean reconstruction", True),
    ("distortion bits/dim (paper convention)", False),
    ("total bits/dim, empirical prior", False),
)


def spreads(runs: dict[str, list[DemoRun]]) -> dict[str, dict[str, Aggregate]]:
    """{figure label: {model label: Aggregate over its seeds}}."""
    return {
        label: {model: aggregate([float(fn(r)) for r in rs]) for model, rs in runs.items()} for label, _, fn in FIGURES
    }


def verdict(values: dict[str, dict[str, Aggregate]]) -> list[str]:
    """One line per compared figure: the difference of the means, whether the seeds' ranges
    overlap (then the difference is within the spread over seeds: no verdict), and otherwise how
    likely a separation this clean would be by chance (2 seeds each: 1 in 3)."""
    lines = []
    for label, higher in VERDICT:
        dq, vq = values[label]["DQ-AE"], values[label]["VQ-VAE"]
        if any(math.isnan(v) for v in dq.values + vq.values):
            continue
        diff = dq.mean - vq.mean
        better = "DQ-AE" if (diff > 0) == higher else "VQ-VAE"
        n, m = len(dq.values), len(vq.values)
        if min(n, m) < 2:
            lines.append(f"- {label}: DQ-AE - VQ-VAE = {diff:+.3f} with one seed: no spread measured, no verdict")
        elif dq.overlaps(vq):
            lines.append(
                f"- {label}: DQ-AE - VQ-VAE = {diff:+.3f}, within the spread over seeds "
                f"(the seeds' ranges overlap): no verdict"
            )
        else:
            # if both models were equally good, every seed of one would beat every seed of the
            # other (either way) with this probability: 2 / C(n + m, n)
            chance = 2 / math.comb(n + m, n)
            strength = "suggestive only" if chance > 0.05 else "unlikely by chance"
            lines.append(
                f"- {label}: {better} is better by {abs(diff):.3f}; every seed of one model beats every "
                f"seed of the other ({n} + {m} seeds: {strength}, {chance:.0%} by chance if the models "
                "were equal)"
            )
    return lines


def run_demo(
    out: str | os.PathLike = "results/demo",
    *,
    steps: int = DEMO_STEPS,
    quick: bool = False,
    batch_size: int = 32,
    seeds: Sequence[int] = DEMO_SEEDS,
    data: str | None = None,
    prior: bool = True,
) -> dict[str, list[DemoRun]]:
    """Train and evaluate both models at every seed; returns the runs by model label and writes
    them to ``out``."""
    steps = QUICK_STEPS if quick else steps
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise UsageError("the demo needs at least one seed")
    if data is None:
        choice = choose_photo_set()
        data, data_note = choice.name, choice.message
    else:
        data_note = f"data: {data}"
    configs = {
        (label, seed): demo_config(quantizer, steps, batch_size, seed=seed, data=data)
        for label, quantizer in MODELS
        for seed in seeds
    }
    for config in configs.values():
        config.datamodule()  # the data set must fit the demo's model: ConfigError before any folder
    out = _fresh_dir(Path(out))
    out.mkdir(parents=True, exist_ok=True)
    print(f"depthq demo: DQ-AE vs VQ-VAE, {steps} steps each, seeds {seeds}, recipe {RECOMMENDED!r} -> {out}")
    print(data_note)
    options = EvalOptions(device="cuda" if torch.cuda.is_available() else "cpu")
    runs: dict[str, list[DemoRun]] = {label: [] for label, _ in MODELS}
    pictures = {}
    for seed in seeds:
        for label, quantizer in MODELS:
            run_dir = out / f"{quantizer}-seed{seed}"
            config = configs[label, seed]
            summary = train(config, run_dir, description=f"training {label}, seed {seed}")
            run_options = options
            if prior and seed == seeds[0]:
                # a smoke-test budget gets a smoke-test prior
                smoke = steps <= QUICK_STEPS
                budget = QUICK if smoke else DEFAULT
                _train_prior(run_dir, label, budget["prior"])
                run_options = dataclasses.replace(options, codec_images=budget["codec_images"])
            # the full report of `depthq eval`: eval.json, report.md and figures in <run>/eval-test/
            report = write_eval(run_dir, run_options)
            runs[label].append(DemoRun(label, seed, config, summary, report.result))
            if seed == seeds[0]:
                pictures[label] = sample_reconstructions(report.evaluation)
    _write(out, runs, pictures, steps=steps, seeds=seeds, data_note=data_note)
    return runs


def _train_prior(run_dir: Path, label: str, settings: Sequence[str]) -> None:
    print(f"training the learned prior over {label}'s codes ({', '.join(settings)})")
    train_prior(run_dir, load_prior_config(None, settings))


def _write(
    out: Path, runs: dict[str, list[DemoRun]], pictures: dict, *, steps: int, seeds: list[int], data_note: str
) -> None:
    values = spreads(runs)
    n = len(seeds)
    columns = [
        f"{label} ({'mean ± std over ' + str(n) + ' seeds' if n > 1 else 'seed ' + str(seeds[0])})" for label in runs
    ]
    rows = [[label, *(values[label][model].format(digits) for model in runs)] for label, digits, _ in FIGURES]
    first = {label: rs[0] for label, rs in runs.items()}
    after = next(i for i, row in enumerate(rows) if row[0] == "total bits/dim, empirical prior") + 1
    learned = [first[label].result.total("learned") for label in runs]
    if any(v is not None for v in learned):
        rows.insert(
            after,
            [
                f"total bits/dim, learned prior (seed {seeds[0]})",
                *("n/a" if v is None else f"{v:.3f}" for v in learned),
            ],
        )
    files = [_codec_section(first[label].result) for label in runs]
    if any(c is not None for c in files):
        images = next(c for c in files if c is not None).measurement.images
        after += any(v is not None for v in learned)
        rows.insert(
            after,
            [
                f".dqz lossless files, bits/dim (whole files; ideal; exact round trips), "
                f"first {images} test images, seed {seeds[0]}",
                *(
                    "n/a"
                    if c is None
                    else f"{c.measurement.lossless_bits_per_dim:.3f}; "
                    f"{c.measurement.model_bits_per_dim:.3f}; {c.measurement.round_trips_verified}/"
                    f"{c.measurement.images}"
                    for c in files
                ),
            ],
        )
    rows.append(
        [
            "code vectors per level",
            *(" / ".join(str(lv.code_vectors) for lv in first[label].result.levels) for label in runs),
        ]
    )
    table = markdown_table(["figure (test split)", *columns], rows, align="l" + "r" * len(columns))
    lines = verdict(values)
    result = first["DQ-AE"].result
    empirical = result.rate("empirical")
    note = (
        f"Test split: {result.images:,} held-out {result.data} patches ({result.dims} dims each), "
        f"{steps} training steps per run. Prior of the 'empirical' rows: "
        f"{empirical.description if empirical else 'not fitted'}. JPEG/WebP: Pillow on the same images, "
        "a quality sweep read at each run's code rate; PNG/WebP-lossless: one file per image."
    )
    per_run = format_table({f"{r.label}, seed {r.seed}": r.result for rs in runs.values() for r in rs})
    originals = next(iter(pictures.values()))[0]
    figures.labelled_rows(
        [originals, *(p[2] for p in pictures.values())],
        ["test originals", *(f"{label} reconstructions" for label in pictures)],
        out / "test_reconstructions.png",
        title=f"Held-out test photos and their reconstructions (the mean of p(x|z)), seed {seeds[0]}",
    )
    panels = [p for name, rs in runs.items() for p in mi_panels(rs[0].result, prefix=f"{name}, ")]
    figures.mi_matrices(panels, out / "mutual_information.png")
    write_json(
        out / "summary.json",
        {
            "schema": "depthq.demo",
            "schema_version": 2,
            "steps": steps,
            "seeds": seeds,
            "recipe": RECOMMENDED,
            "data": data_note,
            "runs": {
                label: [{"seed": r.seed, "train": r.summary.to_dict(), "eval": r.result.to_dict()} for r in rs]
                for label, rs in runs.items()
            },
        },
    )
    write_text(
        out / "summary.md",
        f"# depthq demo\n\n{data_note}\n\n{table}\n\nVerdict:\n"
        + "\n".join(lines)
        + f"\n\n{note}\n\n## Every run\n\n{per_run}\n\n![test reconstructions](test_reconstructions.png)\n"
        f"\nRows of the picture: test originals, {', '.join(pictures)} reconstructions.\n\n"
        f"![mutual information](mutual_information.png)\n\nFull reports: "
        + ", ".join(f"{q}-seed{s}/eval-test/report.md" for s in seeds for _, q in MODELS)
        + "\n",
    )
    print()
    print(table)
    print()
    print("Verdict:")
    print("\n".join(lines))
    print()
    print(note)
    print(
        f"Pictures: {out / 'test_reconstructions.png'} (rows: originals, {', '.join(pictures)}), "
        f"{out / 'mutual_information.png'}; every run's figures: {out / 'summary.md'}; full reports with "
        f"figures: {out}/*-seed*/eval-test/report.md"
    )
