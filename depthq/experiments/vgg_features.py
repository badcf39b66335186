"""VGG-16 ``block5_pool`` features of 224x224 image crops, cached: the static prior's data.

Two sources of images:

- **the bundled photos** (``depthq.data.PHOTOS``, 11 colour photographs): each photo is resized
  (Pillow bilinear, antialiased) so that its shorter side is each of the preset's ``scales``, and
  a grid of 224x224 crops with ``stride`` pixels between corners is cut, centred on the resized
  photo. Several scales give objects at several sizes, as ImageNet photos have. The photos' own
  ``test`` flag (chelsea, coffee, china) makes the split, so no test crop shares a photo with a
  train crop;
- **a folder** of PNG/JPEG images (``--folder``): every image's shorter side is resized to 256
  and the centre 224x224 crop is kept, the usual ImageNet evaluation crop (the paper used
  ImageNet). The test images are ``depthq.data.folder.holdout_mask``'s 10% (by file-name hash).

The features are extracted in fp32, one pass, with a progress bar, and cached as float32
``.npy`` files under ``<cache root>/vgg16-features/<key>/`` (written atomically, ``meta.json``
last). The key is a hash of the weight source, the crop settings and the source images (photo
names, or each file's path, size and modification time), so other weights or images give a new
entry. ``train.npy`` / ``test.npy`` hold (N, 512, 7, 7); ``train_crops.npy`` / ``test_crops.npy``
hold int32 (N, 4) rows (source index, scale, top, left).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from depthq.data import cache
from depthq.data.folder import FOLDER_VERSION, holdout_mask, list_images, to_rgb
from depthq.data.photos import PHOTOS, PHOTOS_VERSION, load_photo
from depthq.errors import DataError

CROP = 224
FEATURE_SHAPE = (512, 7, 7)
FOLDER_SCALE = 256  # folder images: shorter side 256, centre crop 224
FEATURES_VERSION = 1


class CropSettings(Protocol):
    """What :func:`features` reads from a preset (read-only: a frozen dataclass fits)."""

    @property
    def scales(self) -> tuple[int, ...]: ...

    @property
    def stride(self) -> int: ...

    @property
    def batch_size(self) -> int: ...


@dataclass(frozen=True)
class Source:
    """One image to crop."""

    name: str  # photo name, or path relative to the folder
    test: bool
    size: tuple[int, int]  # (height, width) before resizing
    load: Callable[[], Image.Image]  # the RGB image


def crop_grid(height: int, width: int, scale: int, stride: int | None) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Resized (height, width) for shorter side ``scale``, and the (top, left) of every crop.

    ``stride=None`` keeps only the centre crop; otherwise the grid is centred on the image.
    """
    if scale < CROP:
        raise DataError(f"crop scales must be >= {CROP} (the shorter side after resizing), got {scale}")
    ratio = scale / min(height, width)
    new_h, new_w = max(CROP, round(height * ratio)), max(CROP, round(width * ratio))

    def starts(n: int) -> list[int]:
        if stride is None:
            return [(n - CROP) // 2]
        count = (n - CROP) // stride + 1
        first = (n - CROP - (count - 1) * stride) // 2
        return [first + i * stride for i in range(count)]

    return (new_h, new_w), [(y, x) for y in starts(new_h) for x in starts(new_w)]


def _crops(
    source: Source, scales: Sequence[int], stride: int | None
) -> Iterator[tuple[np.ndarray, tuple[int, int, int]]]:
    """uint8 (3, 224, 224) crops of one source, with (scale, top, left)."""
    image = source.load().convert("RGB")
    for scale in scales:
        (h, w), corners = crop_grid(*source.size, scale, stride)
        resized = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR)).transpose(2, 0, 1)  # (3, h, w)
        for y, x in corners:
            yield np.ascontiguousarray(resized[:, y : y + CROP, x : x + CROP]), (scale, y, x)


def photo_sources() -> list[Source]:
    sources = []
    for photo in PHOTOS:
        array = load_photo(photo)  # (H, W, 3) uint8, 11 small photos: read once
        sources.append(Source(photo.name, photo.test, array.shape[:2], functools.partial(Image.fromarray, array)))
    return sources


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return to_rgb(im)  # 16-bit greyscale scaled, not clipped
    except OSError as err:
        raise DataError(f"cannot read image {path} ({err}): corrupt or truncated? expected a PNG or JPEG file") from err


def folder_sources(root: Path) -> tuple[list[Source], list[tuple[str, int, int]]]:
    """The folder's images (and their (path, size, mtime) for the cache key)."""

    paths = list_images(root)
    relative = [p.relative_to(root).as_posix() for p in paths]
    test = holdout_mask(relative)
    sources = []
    for path, rel, is_test in zip(paths, relative, test):
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        except OSError as err:
            raise DataError(f"cannot read image {path} ({err}); expected a PNG or JPEG file") from err
        sources.append(Source(rel, bool(is_test), (h, w), functools.partial(_open_rgb, path)))
    stats = [(rel, p.stat().st_size, p.stat().st_mtime_ns) for p, rel in zip(paths, relative)]
    return sources, stats


@torch.inference_mode()
def _extract(model: torch.nn.Module, batch: list[np.ndarray], device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.stack(batch)).to(device)  # (B, 3, 224, 224) uint8 RGB
    y = model(x).float()
    if tuple(y.shape[1:]) != FEATURE_SHAPE:
        raise DataError(f"the feature extractor must map (B, 3, 224, 224) to (B, 512, 7, 7), got {tuple(y.shape)}")
    return y.cpu().numpy()


def _build(
    folder: Path,
    model: torch.nn.Module,
    sources: list[Source],
    scales: tuple[int, ...],
    stride: int | None,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    counts = {False: 0, True: 0}
    for s in sources:
        counts[s.test] += sum(len(crop_grid(*s.size, scale, stride)[1]) for scale in scales)
    if not counts[False] or not counts[True]:
        raise DataError(
            f"need train and test crops, got {counts[False]} train / {counts[True]} test "
            f"from {len(sources)} images; add images (a folder needs at least two)"
        )
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        arrays = {
            t: stack.enter_context(
                cache.npy_writer(folder / f"{'test' if t else 'train'}.npy", (counts[t], *FEATURE_SHAPE), np.float32)
            )
            for t in (False, True)
        }
        index: dict[bool, list[tuple[int, int, int, int]]] = {False: [], True: []}  # (source, scale, top, left)
        pending: dict[bool, list[np.ndarray]] = {False: [], True: []}
        bar = stack.enter_context(tqdm(total=sum(counts.values()), desc="VGG-16 features", unit="crop"))

        def flush(t: bool) -> None:
            if pending[t]:
                done = len(index[t]) - len(pending[t])
                arrays[t][done : len(index[t])] = _extract(model, pending[t], device)
                bar.update(len(pending[t]))
                pending[t].clear()

        for i, source in enumerate(sources):
            for crop, (scale, y, x) in _crops(source, scales, stride):
                pending[source.test].append(crop)
                index[source.test].append((i, scale, y, x))
                if len(pending[source.test]) == batch_size:
                    flush(source.test)
        flush(False)
        flush(True)
    for t in (False, True):
        cache.save_npy(folder / f"{'test' if t else 'train'}_crops.npy", np.asarray(index[t], np.int32).reshape(-1, 4))
    return {
        "train_crops": counts[False],
        "test_crops": counts[True],
        "extraction_seconds": time.perf_counter() - start,
        "sources": [s.name for s in sources],
    }


def features(
    model: torch.nn.Module,
    preset: CropSettings,
    *,
    folder: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train and test features (N, 512, 7, 7) float32 (memory-mapped) and a description of them.

    ``model`` maps uint8 RGB (B, 3, 224, 224) to (B, 512, 7, 7) and names its weights in a
    ``weight_source`` attribute (part of the cache key).
    """
    device = torch.device(device)
    weight_source = getattr(model, "weight_source", None)
    if not isinstance(weight_source, str):
        raise TypeError("the feature extractor needs a `weight_source` string (it keys the feature cache)")
    if folder is None:
        sources, scales, stride = photo_sources(), tuple(preset.scales), preset.stride
        ids: Any = ([(p.name, p.file, p.test) for p in PHOTOS], PHOTOS_VERSION)
        what, kind = "the 11 bundled photos (depthq.data.PHOTOS)", "photos"
    else:
        root = Path(folder).expanduser().resolve()
        sources, stats = folder_sources(root)
        scales, stride = (FOLDER_SCALE,), None
        ids, what, kind = (str(root), stats, FOLDER_VERSION), f"image folder {root}", root.name
    key = cache.cache_key(weight_source, scales, stride, CROP, ids, FEATURES_VERSION)
    entry = cache.cache_root() / "vgg16-features" / f"{kind}-{key}"
    model = model.to(device).eval()
    arrays, meta = cache.cached_arrays(
        entry,
        ("train", "test", "train_crops", "test_crops"),
        lambda out: _build(out, model, sources, scales, stride, preset.batch_size, device),
    )
    names = meta["sources"]
    info = {
        "images": what,
        "weight_source": weight_source,
        "preprocess": getattr(model, "preprocess", None),
        "crop_size": CROP,
        "scales": list(scales),
        "stride": stride,
        "feature_shape": list(FEATURE_SHAPE),
        "train_crops": meta["train_crops"],
        "test_crops": meta["test_crops"],
        "train_images": sorted({names[i] for i in np.unique(arrays["train_crops"][:, 0])}),
        "test_images": sorted({names[i] for i in np.unique(arrays["test_crops"][:, 0])}),
        "extraction_seconds": meta["extraction_seconds"],
        "cache": str(entry),
    }
    return arrays["train"], arrays["test"], info
