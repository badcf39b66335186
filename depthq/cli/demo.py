"""``depthq demo``: the main job on real photos, DQ-AE next to VQ-VAE over seeds."""

from __future__ import annotations

import argparse

from depthq.presets import experiment_preset

DEFAULT, QUICK = experiment_preset("demo", "default"), experiment_preset("demo", "quick")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train and compare DQ-AE and VQ-VAE on real photos over seeds",
        description="Train a small DQ-AE and a VQ-VAE with the same network, data, recipe and budget over "
        "several seeds, fit a learned prior for the first seed, evaluate every run on held-out test photos "
        "next to PNG, WebP and JPEG, and print one table with a verdict.",
    )
    p.add_argument("--out", default="results/demo", help="results folder (a new one if it exists)")
    p.add_argument("--steps", type=int, default=DEFAULT["steps"], help="training steps per model and seed")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT["seeds"]), help="seeds of every model")
    p.add_argument("--batch-size", type=int, default=DEFAULT["batch_size"])
    p.add_argument("--data", help="data set (default: scenes when installed, else the built-in photos)")
    p.add_argument("--no-prior", dest="prior", action="store_false", help="skip the learned prior")
    p.add_argument("--quick", action="store_true", help=f"{QUICK['steps']} steps each: a smoke test")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthq.demo import run_demo  # deferred: `depthq --help` stays free of torch

    run_demo(
        args.out,
        steps=args.steps,
        quick=args.quick,
        seeds=args.seeds,
        batch_size=args.batch_size,
        data=args.data,
        prior=args.prior,
    )
    return 0
