"""``depthq train``: train DQ-AE / VQ-VAE from a YAML config with overrides."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from depthq.config import dump_config, load_config

#: shortcut flags whose value is text: passed through as a YAML string, so that e.g.
#: ``--root ~`` or ``--root 2024`` is a folder name, not null or a number
TEXT_SHORTCUTS = {"accelerator", "precision", "strategy", "quantizer", "data", "root"}

SHORTCUTS = {  # convenience flags -> config keys
    "steps": "train.steps",
    "devices": "train.devices",
    "accelerator": "train.accelerator",
    "precision": "train.precision",
    "strategy": "train.strategy",
    "num_nodes": "train.num_nodes",
    "seed": "train.seed",
    "batch_size": "data.batch_size",
    "quantizer": "model.quantizer",
    "data": "data.name",
    "root": "data.root",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train DQ-AE or VQ-VAE from a config",
        description="Train a model from a YAML config (configs/*.yaml) with optional overrides. "
        "Writes checkpoints, metrics, grids and model.safetensors to the run directory.",
    )
    p.add_argument("--config", "-c", help="YAML run config (default: all defaults = photos, official model)")
    p.add_argument("--run-dir", help="output folder (default: runs/<config name>-<time>); "
                   "with --resume, the run to continue")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint (same config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.codebook_sizes=[64,64] (repeatable)")
    for flag, key in SHORTCUTS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, metavar="VALUE", help=f"same as --set {key}=VALUE")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthq.train import train

    overrides = list(args.overrides)
    for flag, key in SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            if flag in TEXT_SHORTCUTS and not (flag == "precision" and value.isdigit()):
                value = json.dumps(value)  # a YAML string
            overrides.append(f"{key}={value}")
    if args.resume:
        if not args.run_dir:
            raise ValueError("--resume needs --run-dir (the run to continue)")
        config = load_config(Path(args.run_dir) / "config.yaml", overrides)
        run_dir = Path(args.run_dir)
    else:
        config = load_config(args.config, overrides)
        stem = Path(args.config).stem if args.config else "default"
        run_dir = Path(args.run_dir or f"runs/{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    summary = train(config, run_dir, resume=args.resume)
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """A few readable lines about a finished run."""
    lines = [f"run: {summary['run_dir']}  ({summary['steps']} steps in {summary['train_seconds']:.0f} s, "
             f"{summary['parameters']:,} parameters, {summary['precision']}"
             f"{', skipped ' + str(summary['skipped_steps']) + ' steps' if summary['skipped_steps'] else ''})"]
    val = summary.get("validation")
    if val:
        bits = val.get("bits_per_dim")
        if bits:
            lines.append(
                f"validation ({val['images']} images): distortion {bits['distortion']:.3f} bits/dim "
                f"(paper convention), total {bits['total_uniform']:.3f} (uniform prior)"
                + (f", {bits['total_empirical']:.3f} (EMA empirical prior)" if "total_empirical" in bits else "")
            )
        lines.append(f"validation MSE {val['mse']:.2f}, PSNR {val['psnr']:.2f} dB")
    lines.append(f"load it with: depthq.load({json.dumps(summary['run_dir'])})")
    return "\n".join(lines)
