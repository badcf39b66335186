"""``depthq train``: train DQ-AE / VQ-VAE from a YAML config with overrides."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from depthq.errors import ConfigError, MissingFileError

#: shortcut flags whose value is text: passed through as a YAML string, so that e.g.
#: ``--root ~`` or ``--root 2024`` is a folder name, not null or a number
TEXT_SHORTCUTS = {"recipe", "accelerator", "precision", "strategy", "quantizer", "data", "root"}

SHORTCUTS = {  # convenience flags -> config keys
    "recipe": "recipe",
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
    p.add_argument(
        "--config",
        "-c",
        help="YAML run config (default: all defaults = the official model on the "
        "photos, trained with the recommended recipe)",
    )
    p.add_argument(
        "--run-dir", help="output folder (default: runs/<config name>-<time>); with --resume, the run to continue"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        choices=["last", "best"],
        help="continue the run in --run-dir from checkpoints/last.ckpt (or best.ckpt with "
        "--resume best), with its own config; only --steps (to extend it), --root and "
        "train.skip_grad_norm may change",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set model.codebook_sizes=[64,64] (repeatable)",
    )
    for flag, key in SHORTCUTS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, metavar="VALUE", help=f"same as --set {key}=VALUE")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config, each value with where it came from (default, preset, "
        "recipe, file, --set), and exit",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: `depthq --help` stays free of torch
    from depthq.config import dump_config, resolve_config
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
            raise ConfigError("--resume needs --run-dir (the run to continue)")
        if args.config:
            raise ConfigError(
                "--resume continues the run with its own config.yaml; --config cannot be "
                "combined with it (use --steps to extend the run)"
            )
        run_dir = Path(args.run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise MissingFileError(
                f"cannot resume: {run_dir / 'config.yaml'} not found (is {run_dir} "
                "a run directory written by depthq train?)"
            )
        resolved = resolve_config(run_dir / "config.yaml", overrides, default_recipe=None)
    else:
        resolved = resolve_config(args.config, overrides)
        stem = Path(args.config).stem if args.config else "default"
        run_dir = Path(args.run_dir or f"runs/{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    config = resolved.config
    if args.print_config:
        print(dump_config(config, resolved.sources), end="")
        return 0
    report(train(config, run_dir, resume=args.resume or False))
    return 0


def report(summary) -> None:
    """Print a finished run's summary, once: under DDP every rank returns from ``train``."""
    from depthq.runtime import is_main_process  # deferred: `depthq --help` stays free of torch

    if is_main_process():
        print(summary.format())
