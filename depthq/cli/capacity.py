"""``depthq capacity``: representation capacity and cost of DQ versus VQ (Eq. 2)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from depthq.experiments.capacity import capacity, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capacity", help="capacity and cost of DQ versus VQ (Eq. 2)", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("-M", "--num-codebooks", type=int, nargs="+", default=[5], help="M values")
    p.add_argument("-K", "--codebook-size", type=int, nargs="+", default=[32], help="K values")
    p.add_argument("-D", "--code-dim", type=int, default=64)
    p.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=[8, 8],
        metavar=("H", "W"),
        help="spatial size of the quantized feature map (default 8 8)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = [capacity(m, k, args.code_dim, *args.shape) for m in args.num_codebooks for k in args.codebook_size]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"Feature map {args.shape[0]}x{args.shape[1]}: capacity K^M for a cost of M*K code vectors")
        print(format_table(rows))
    return 0
