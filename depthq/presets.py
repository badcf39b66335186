"""Named configurations, in one registry: model presets, training recipes, experiment presets.

Every entry is data (a ``Named``): a one-line description, its values, and, where it was
measured, a pointer to the committed results file that holds the figure it reached
(``Measured``; ``docs/results/*.json``). Nothing here builds a model or a run: the config layer
overlays these values (``model.preset``, the ``recipe:`` key), the experiments read their
presets from here. A leaf module: it imports nothing of depthq.

- ``MODELS``: architectures (``model.preset: NAME``), partial ``ModelConfig`` fields over the
  official defaults.
- ``RECIPES``: how to train (``recipe: NAME`` in a run config, overlaid like a preset): every
  recipe sets the same keys (``RECIPE_KEYS``), so the one chosen decides them all.
  ``RECOMMENDED`` is what ``depthq train``, the configs, the demo and the experiments use;
  ``paper`` is the official code's settings for a faithful reproduction.
- ``EXPERIMENTS``: the presets of each experiment command (and the demo's budgets).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


@dataclass(frozen=True)
class Measured:
    """Where a named configuration's figure was measured: a committed results file and the
    cell of one of its tables (``depthq.results``), e.g. the recipe's test PSNR."""

    results: str
    """File name under ``docs/results/``."""
    table: str
    """The table's name in that file."""
    row: str
    """The row's first cell."""
    column: str
    """The column's header."""


@dataclass(frozen=True)
class Named:
    """One named configuration: what it is, its values, and where it was measured."""

    description: str
    values: Mapping[str, Any] = field(default_factory=dict)
    measured: Measured | None = None

    def settings(self) -> dict[str, Any]:
        """A deep copy of ``values`` (callers may change it)."""
        return copy.deepcopy(dict(self.values))


# -- models ------------------------------------------------------------------------------------

MODELS: dict[str, Named] = {
    "official": Named(
        "the official code's defaults: channel 256, 3 res blocks, M=5, D=64, K=32 at 3 levels "
        "(44M parameters at 32x32 RGB with the dmol head)"
    ),
    "paper-22m": Named(
        "the paper's reported model size (22.0M parameters): the official network at channel 176",
        {"channels": 176, "res_channels": 176},
    ),
    "small": Named(
        "trains at a useful speed on a 2-core CPU: channel 64, 1 res block, 2 levels of M=4, K=64, D=16",
        {
            "channels": 64,
            "res_channels": 32,
            "res_blocks": 1,
            "coder_blocks": 1,
            "codebook_sizes": [64, 64],
            "num_codebooks": 4,
            "code_dim": 16,
        },
    ),
    "demo": Named(
        "the demo's network: the official architecture narrowed to train on 2 CPU cores in minutes "
        "(channel 64, 2 res blocks, 2 coder blocks, 2 levels of M=4, K=64, D=16, dmol head)",
        {
            "channels": 64,
            "res_channels": 32,
            "res_blocks": 2,
            "coder_blocks": 2,
            "stride": 2,
            "codebook_sizes": [64, 64],
            "num_codebooks": 4,
            "code_dim": 16,
            "head": "dmol",
        },
    ),
    "tiny": Named(
        "for tests: channel 16, 2 levels of M=2, K=16, D=4",
        {
            "channels": 16,
            "res_channels": 8,
            "res_blocks": 1,
            "coder_blocks": 1,
            "codebook_sizes": [16, 16],
            "num_codebooks": 2,
            "code_dim": 4,
        },
    ),
}

# -- training recipes --------------------------------------------------------------------------

#: the keys every recipe sets (section, field)
RECIPE_KEYS = (
    ("model", "beta"),
    ("model", "commitment"),
    ("model", "kmeans_init"),
    ("model", "mse_weight"),
    ("train", "lr"),
    ("train", "lr_schedule"),
    ("train", "min_lr_ratio"),
)


def _recipe(
    description: str,
    measured: Measured | None = None,
    *,
    beta: float = 0.25,
    commitment: str = "mean",
    kmeans_init: bool = False,
    mse_weight: float = 0.0,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    min_lr_ratio: float = 0.0,
) -> Named:
    return Named(
        description,
        {
            "model": {"beta": beta, "commitment": commitment, "kmeans_init": kmeans_init, "mse_weight": mse_weight},
            "train": {"lr": lr, "lr_schedule": lr_schedule, "min_lr_ratio": min_lr_ratio},
        },
        measured,
    )


class _Schedule(TypedDict):
    """The learning-rate keywords of ``_recipe``, to pass as ``**schedule``."""

    lr: float
    lr_schedule: str
    min_lr_ratio: float


_COSINE = _Schedule(lr=2e-3, lr_schedule="cosine", min_lr_ratio=0.05)

RECIPES: dict[str, Named] = {
    "paper": _recipe(
        "the official code: Adam 2e-4 constant, commitment 0.25 summed over the codebooks, "
        "codebooks seeded by random vectors, the likelihood alone",
        beta=0.25,
        commitment="sum",
        lr=2e-4,
    ),
    # the sweep of `depthq experiment recipe`: one change at a time from depthq 0.1's recipe, then together
    "v0.1": _recipe("depthq 0.1: Adam 1e-3 constant, commitment 0.25 (mean over codebooks), random seeding"),
    "beta-M": _recipe("v0.1 with commitment 1.0: the official normalisation for M = 4", beta=1.0),
    "kmeans++": _recipe(
        "v0.1 with codebooks initialised by k-means (k-means++ seeding) on the first batch", kmeans_init=True
    ),
    "cosine": _recipe("v0.1 with peak rate 2e-3 and a cosine decay to 5% of it", **_COSINE),
    "all": _recipe("beta-M, kmeans++ and cosine together", beta=1.0, kmeans_init=True, **_COSINE),
    "mse": _recipe("v0.1 with an auxiliary squared error of the expected image (mse_weight 10)", mse_weight=10.0),
    "all+mse": _recipe(
        "all, with the auxiliary squared error: k-means++ init, commitment 1.0, cosine from 2e-3 to 5%, mse_weight 10",
        beta=1.0,
        kmeans_init=True,
        mse_weight=10.0,
        **_COSINE,
    ),
}
#: the recipe ``recipe: recommended`` (and a config without a ``recipe:`` key) trains with,
#: chosen by the table of `depthq experiment recipe`
RECOMMENDED = "all+mse"
#: the alias of the recommended recipe in configs
RECOMMENDED_ALIAS = "recommended"


def recipe_name(name: str) -> str:
    """The registry name of a recipe (``recommended`` is an alias); ValueError if unknown."""
    resolved = RECOMMENDED if name == RECOMMENDED_ALIAS else name
    if resolved not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {[RECOMMENDED_ALIAS, *RECIPES]}")
    return resolved


# -- experiment presets ------------------------------------------------------------------------

_TOY_NET = {"channels": 16, "res_channels": 8, "res_blocks": 1, "coder_blocks": 1}

EXPERIMENTS: dict[str, dict[str, Named]] = {
    "demo": {
        "default": Named(
            "DQ-AE and VQ-VAE, 800 steps each at batch 32, seeds 0 and 1, a learned prior and 100 .dqz "
            "files for the first seed",
            {
                "steps": 800,
                "seeds": [0, 1],
                "batch_size": 32,
                "codec_images": 100,
                "prior": ["train.steps=600", "train.max_train_images=16384"],
            },
        ),
        "quick": Named(
            "a smoke test: 60 steps, a 10-step prior, 4 .dqz files",
            {
                "steps": 60,
                "seeds": [0, 1],
                "batch_size": 32,
                "codec_images": 4,
                "prior": [
                    "train.steps=10",
                    "train.max_train_images=256",
                    "train.max_val_images=64",
                    "train.val_every=10",
                ],
            },
        ),
    },
    "decoupling": {
        "quick": Named(
            "2 CPU cores: a single-level network (channel 64), M=4, K=8, D=16, 600 steps, seeds 0 and 1",
            {
                "model": {"channels": 64, "res_channels": 32, "res_blocks": 1, "coder_blocks": 2},
                "num_codebooks": 4,
                "codebook_size": 8,
                "code_dim": 16,
                "steps": 600,
                "seeds": [0, 1],
                "batch_size": 32,
                "lr": 1e-3,
                "prior_images": 2048,
            },
        ),
        "full": Named(
            "one GPU: the official network at a single level, M=4, K=16, D=64, 20,000 steps, 3 seeds",
            {
                "model": {"channels": 256, "res_channels": 256, "res_blocks": 3, "coder_blocks": 2},
                "num_codebooks": 4,
                "codebook_size": 16,
                "code_dim": 64,
                "steps": 20000,
                "seeds": [0, 1, 2],
                "batch_size": 128,
                "lr": 2e-4,
                "prior_images": 8192,
            },
        ),
        "gpu": Named(
            "sized for 8 minutes on one H100/H200 (not yet timed on a GPU): channel 128, M=4, K=16, D=32, "
            "2,000 steps, seeds 0 and 1",
            {
                "model": {"channels": 128, "res_channels": 64, "res_blocks": 2, "coder_blocks": 2},
                "num_codebooks": 4,
                "codebook_size": 16,
                "code_dim": 32,
                "steps": 2000,
                "seeds": [0, 1],
                "batch_size": 128,
                "lr": 1e-3,
                "prior_images": 8192,
            },
        ),
        "toy": Named(
            "seconds: for tests",
            {
                "model": _TOY_NET,
                "num_codebooks": 2,
                "codebook_size": 4,
                "code_dim": 4,
                "steps": 2,
                "seeds": [0, 1],
                "batch_size": 8,
                "lr": 1e-3,
                "prior_images": 32,
            },
        ),
    },
    "ablation": {
        "quick": Named(
            "2 CPU cores: DQ and VQ over K in {8, 64} and D in {8, 32}, M=4, 500 steps, one seed",
            {
                "model": {"channels": 64, "res_channels": 32, "res_blocks": 1, "coder_blocks": 2},
                "quantizers": ["dq", "vq"],
                "codebook_sizes": [8, 64],
                "code_dims": [8, 32],
                "num_codebooks": [4],
                "steps": 500,
                "seed": 0,
                "batch_size": 32,
                "lr": 1e-3,
                "prior_images": 2048,
            },
        ),
        "full": Named(
            "one GPU: the official network, K x D a 4 x 4 grid for DQ, VQ and coupled, 10,000 steps",
            {
                "model": {"channels": 256, "res_channels": 256, "res_blocks": 3, "coder_blocks": 2},
                "quantizers": ["dq", "vq", "coupled"],
                "codebook_sizes": [16, 64, 256, 1024],
                "code_dims": [8, 16, 32, 64],
                "num_codebooks": [4],
                "steps": 10000,
                "seed": 0,
                "batch_size": 128,
                "lr": 2e-4,
                "prior_images": 8192,
            },
        ),
        "toy": Named(
            "seconds: for tests",
            {
                "model": _TOY_NET,
                "quantizers": ["dq", "vq"],
                "codebook_sizes": [4, 8],
                "code_dims": [4],
                "num_codebooks": [2],
                "steps": 2,
                "seed": 0,
                "batch_size": 8,
                "lr": 1e-3,
                "prior_images": 32,
            },
        ),
    },
    "recipe": {
        "quick": Named(
            "2 CPU cores: the demo's network, every recipe x DQ-AE and VQ-VAE, 600 steps, one seed",
            {"steps": 600, "batch_size": 32, "seeds": [0], "prior_images": 2048},
        ),
        "full": Named(
            "one GPU: 5,000 steps at batch 128, seeds 0 and 1",
            {"steps": 5000, "batch_size": 128, "seeds": [0, 1], "prior_images": 8192},
        ),
        "toy": Named(
            "seconds: for tests",
            {
                "steps": 2,
                "batch_size": 4,
                "seeds": [0],
                "prior_images": 16,
                "model": {**_TOY_NET, "codebook_sizes": [4, 4], "num_codebooks": 2, "code_dim": 4, "mixtures": 2},
            },
        ),
    },
    "static-prior": {
        "quick": Named(
            "611 VGG-16 crops (413 train / 198 test), 3 seeds: a few minutes on 2 CPU cores",
            {
                "scales": [256, 384, 512],
                "stride": 64,
                "codebook_sizes": [32, 1024],
                "seeds": [0, 1, 2],
                "kmeans_iters": 20,
                "lloyd_passes": 10,
            },
        ),
        "full": Named(
            "3,754 crops (2,512 train / 1,242 test), 10 seeds as in the paper: sized for one GPU",
            {
                "scales": [256, 320, 384, 448, 512],
                "stride": 32,
                "codebook_sizes": [32, 1024],
                "seeds": list(range(10)),
                "kmeans_iters": 30,
                "lloyd_passes": 30,
                "batch_size": 64,
            },
        ),
    },
}


def experiment_preset(experiment: str, name: str) -> dict[str, Any]:
    """A copy of an experiment's preset values; ValueError naming the choices if unknown."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {sorted(EXPERIMENTS)}")
    presets = EXPERIMENTS[experiment]
    if name not in presets:
        raise ValueError(f"unknown {experiment} preset {name!r}; choose one of {sorted(presets)}")
    return presets[name].settings()
