"""Where does the colour go? The demo's DQ-AE and VQ-VAE next to the same network with a
continuous bottleneck (``model.continuous``: the quantizers replaced by the identity), same
recipe, data and budget, on the demo's test split and on training patches.

    python benchmarks/colour.py [--reuse results/demo] [--seeds 0 1] [--steps 800] [--data scenes]
                                [--models DQ-AE VQ-VAE continuous] [--train-images 512] [--out PATH]

``--reuse`` takes the demo's own run folders (``dq-seed<S>``, ``vq-seed<S>``) where they exist
and were trained with this budget; every other run (and every continuous one) is trained here,
into ``<out's folder>/colour-runs/``. Per run and split: PSNR over all sub-pixels (from the
summed squared error) and the per-image colour bias (``EvalResult.colour_bias``, ``depthq eval``'s:
per patch and channel, the mean of decoded - original; its mean absolute value over the patches,
and its mean). The decoded image is the mean of p(x|z), as the demo's pictures show it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_tables, write_results  # noqa: E402
from depthq.config import RunConfig  # noqa: E402
from depthq.data.imageset import ImageSet  # noqa: E402
from depthq.demo import demo_config  # noqa: E402
from depthq.evaluate.evaluator import evaluate  # noqa: E402
from depthq.evaluate.result import EvalOptions  # noqa: E402
from depthq.results import Table  # noqa: E402
from depthq.runs import SavedRun  # noqa: E402
from depthq.train import train  # noqa: E402

MODELS = (("DQ-AE", "dq", False), ("VQ-VAE", "vq", False), ("continuous", "dq", True))


def config_of(quantizer: str, continuous: bool, steps: int, seed: int, data: str) -> RunConfig:
    config = demo_config(quantizer, steps, seed=seed, data=data)
    return dataclasses.replace(config, model=config.model.replace(continuous=continuous))


def reusable(run_dir: Path, config: RunConfig) -> bool:
    if not (run_dir / "model.safetensors").is_file():
        return False
    saved = SavedRun.open(run_dir).export.run
    return saved is not None and saved.model == config.model and saved.train.steps == config.train.steps


def measure(run: SavedRun, images: ImageSet) -> dict:
    """PSNR and colour bias of the run's mean reconstructions, as ``depthq eval`` measures them."""
    result = evaluate(run.model, images, EvalOptions(split=images.split, diagnostics=False, device="cpu"))
    assert result.colour_bias is not None and result.colour_shift is not None
    return {"psnr": result.psnr, "images": result.images, "mean_abs": list(result.colour_bias),
            "mean": list(result.colour_shift)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", help="the demo's results folder, whose runs are reused where they fit")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--data", default="scenes")
    parser.add_argument("--train-images", type=int, default=512, help="training patches measured (the first N)")
    parser.add_argument("--models", nargs="+", choices=[m[0] for m in MODELS], default=[m[0] for m in MODELS])
    parser.add_argument("--out", default="benchmarks/results/colour.json")
    args = parser.parse_args(argv)
    runs_root = Path(args.out).resolve().parent / "colour-runs"
    figures: dict[str, dict] = {}
    for seed in args.seeds:
        for label, quantizer, continuous in MODELS:
            if label not in args.models:
                continue
            config = config_of(quantizer, continuous, args.steps, seed, args.data)
            name = f"{'continuous' if continuous else quantizer}-seed{seed}"
            run_dir = Path(args.reuse) / name if args.reuse and not continuous else runs_root / name
            if not reusable(run_dir, config):
                run_dir = runs_root / name
                if not reusable(run_dir, config):
                    train(config, run_dir, description=f"training {label}, seed {seed}")
            run = SavedRun.open(run_dir)
            module = run.datamodule()
            train_set = module.dataset("train")
            splits = {
                "test": module.dataset("test"),
                "train": ImageSet(train_set.images[: args.train_images], name=train_set.name, split="train"),
            }
            figures[name] = {"model": label, "seed": seed, "run_dir": str(run_dir)}
            for split, images in splits.items():
                figures[name][split] = measure(run, images)
            test = figures[name]["test"]
            print(f"{label}, seed {seed}: test PSNR {test['psnr']:.2f} dB, |bias| RGB "
                  + " / ".join(f"{v:.1f}" for v in test["mean_abs"]), flush=True)  # fmt: skip
    tables = make_tables(figures, args)
    print()
    print_tables(tables)
    path = write_results(
        args.out,
        title="Colour on unseen scenes: the continuous ceiling, DQ-AE and VQ-VAE",
        tables=tables,
        data={"runs": figures, "steps": args.steps, "data": args.data, "seeds": args.seeds},
        summary=(
            "The demo's network trained with the demo's recipe and budget three ways: DQ-AE, VQ-VAE and a "
            "continuous bottleneck (the quantizers replaced by the identity, `model.continuous`), measured on "
            "the demo's test split (unseen scenes) and on training patches (`benchmarks/colour.py`). The "
            "colour bias is, per patch and channel, the mean of decoded - original in levels of 0..255."
        ),
    )
    print(f"wrote {path}")
    return 0


def make_tables(figures: dict[str, dict], args) -> list[Table]:
    rows = []
    for f in figures.values():
        for split in ("test", "train"):
            m = f[split]
            rows.append(
                (
                    f["model"],
                    str(f["seed"]),
                    f"{split} ({m['images']:,} patches)",
                    f"{m['psnr']:.2f}",
                    " / ".join(f"{v:.1f}" for v in m["mean_abs"]),
                    " / ".join(f"{v:+.1f}" for v in m["mean"]),
                )
            )
    return [
        Table(
            f"PSNR and per-patch colour bias of the mean of p(x|z), {args.data}, {args.steps} steps",
            ("model", "seed", "split", "PSNR dB", "mean |bias| R / G / B", "mean bias R / G / B"),
            tuple(rows),
            notes=(
                "mean |bias|: over the patches, the absolute value of each patch's mean colour error per channel "
                "(a tint either way counts); mean bias: its signed mean (a tint the patches share).",
                "continuous: no quantization, so no rate: the network and budget's own ceiling.",
            ),
        )
    ]


if __name__ == "__main__":
    raise SystemExit(main())
