"""Evaluate a trained model on a split: the shared core of ``depthq eval`` and ``depthq demo``.

1. Fit the empirical prior: code frequencies of (a seeded subset of) the training split,
   add-one smoothed, per level and codebook.
2. Stream the evaluation split once through the model (eval mode, fp32 by default) into an
   ``Evaluator``: labelled bits/dim, MSE/PSNR, code usage, and with ``diagnostics`` the
   entropy maps, mutual information and total correlation of the codes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from depthq.data import ImageSet, get_dataset
from depthq.evaluate.bits import EmpiricalPrior
from depthq.evaluate.evaluator import Evaluator
from depthq.evaluate.information import CodeStatistics
from depthq.io import load, read_metadata
from depthq.models import HierarchicalAutoencoder

log = logging.getLogger(__name__)


def _batches(images: ImageSet, indices: Tensor, batch_size: int, desc: str, progress: bool):
    for start in tqdm(range(0, len(indices), batch_size), desc=desc, unit="batch",
                      disable=not progress, leave=False):
        yield images.batch(indices[start : start + batch_size])


def _autocast(precision: str, device: torch.device):
    if precision == "32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")


@torch.no_grad()
def fit_prior(model: HierarchicalAutoencoder, train_images: ImageSet, *, max_images: int | None = 8192,
              seed: int = 0, batch_size: int = 256, precision: str = "32",
              progress: bool = True) -> tuple[EmpiricalPrior, str]:
    """Empirical prior from the codes of up to ``max_images`` training images (seeded subset).

    Returns the prior and its description, recorded next to every figure that uses it.
    """
    model.eval()
    device = next(model.parameters()).device
    n = len(train_images)
    if max_images is not None and n > max_images:
        g = torch.Generator().manual_seed(seed)
        indices = torch.randperm(n, generator=g)[:max_images].sort().values
    else:
        indices = torch.arange(n)
    m = model.config.codebooks_per_level
    counts = [CodeStatistics(m, k, pairwise=False, positions=False, joint=False) for k in model.config.codebook_sizes]
    with _autocast(precision, device):
        for x in _batches(train_images, indices, batch_size, "fitting the empirical prior", progress):
            for stats, z in zip(counts, model.encode(x.to(device))):
                stats.update(z.cpu())
    name = (f"code frequencies of {len(indices):,} {train_images.name} training "
            f"images, add-one smoothed")
    return EmpiricalPrior.fit([c.marginal for c in counts]), name


@torch.no_grad()
def evaluate_model(model: HierarchicalAutoencoder, images: ImageSet, *, prior: EmpiricalPrior | None = None,
                   prior_name: str = "", diagnostics: bool = False, batch_size: int = 256,
                   precision: str = "32", progress: bool = True,
                   grid_images: int = 8) -> tuple[dict, Evaluator, tuple[Tensor, Tensor]]:
    """Stream ``images`` through the model; returns (result, evaluator, (originals, recons))."""
    model.eval()
    device = next(model.parameters()).device
    evaluator = Evaluator(model, prior=prior, prior_name=prior_name, diagnostics=diagnostics)
    grid = None
    with _autocast(precision, device):
        for x in _batches(images, torch.arange(len(images)), batch_size, f"evaluating {images.split}", progress):
            recon = evaluator.update(x.to(device))
            if grid is None:
                grid = (x[:grid_images].cpu(), recon[:grid_images].cpu())
    result = evaluator.result()
    result.update({"data": images.name, "split": images.split, "precision": precision})
    return result, evaluator, grid


def evaluate_run(run_dir: str | os.PathLike, *, data: str | None = None, root: str | None = None,
                 split: str = "test", weights: str = "model.safetensors", prior_images: int | None = 8192,
                 diagnostics: bool = True, batch_size: int = 256, precision: str = "32",
                 device: str = "cpu", progress: bool = True):
    """Load a run and evaluate it on ``split`` of its data set (or of ``data``).

    Returns (model, result, evaluator, grid) so callers can draw the figures.
    """
    run_dir = Path(run_dir)
    meta = read_metadata(run_dir, weights)
    model = load(run_dir, weights=weights, map_location=device)
    run = meta.get("run", {})
    data_cfg = run.get("data", {})
    name = data or data_cfg.get("name", "photos")
    if root is None and data is None:
        root = data_cfg.get("root")
    schedule = data_cfg.get("schedule")
    size = schedule[-1]["image_size"] if schedule else model.config.image_size  # the last stage's
    if name in ("imagenet32", "imagenet64"):  # a progressive run ends on the other resolution
        name = f"imagenet{size}"
    size_arg = size if name in ("photos", "folder") else None
    seed = run.get("train", {}).get("seed", 0)
    images = get_dataset(name, split, root=root, image_size=size_arg,
                         val_fraction=data_cfg.get("val_fraction", 0.0) if split == "val" else 0.0, seed=seed)
    prior, prior_name = None, ""
    if model.head.has_likelihood and prior_images != 0:
        train_images = get_dataset(name, "train", root=root, image_size=size_arg,
                                   val_fraction=data_cfg.get("val_fraction", 0.0), seed=seed)
        prior, prior_name = fit_prior(model, train_images, max_images=prior_images, seed=seed,
                                      batch_size=batch_size, precision=precision, progress=progress)
    result, evaluator, grid = evaluate_model(model, images, prior=prior, prior_name=prior_name,
                                             diagnostics=diagnostics, batch_size=batch_size,
                                             precision=precision, progress=progress)
    result.update({"run_dir": str(run_dir), "weights": weights, "step": meta.get("step"),
                   "parameters": model.num_parameters(), "quantizer": model.config.quantizer})
    return model, result, evaluator, grid
