"""CompressAI's rate-distortion results files, typed: written and read without CompressAI.

The layout is the one CompressAI's ``compressai.utils.eval_model`` and ``compressai.utils.bench``
print and its ``compressai.utils.plot`` reads, as in its published ``results/image/kodak/*.json``::

    {"name": "bmshj2018-factorized", "description": "Inference (ans)",
     "results": {"psnr-rgb": [...], "ms-ssim-rgb": [...], "bpp": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

- one list entry per rate point (a quality setting or a model), each the **mean over the
  images** of that image's value (bpp too: the mean of per-image bpp, not total bits over total
  pixels; PSNR: the mean of per-image PSNRs);
- ``bpp``: 8 * file bytes / (H*W) of one image; ``psnr-rgb``: dB over the RGB sub-pixels;
  ``ms-ssim-rgb``: in [0, 1] (plotted as -10 log10(1 - v) dB); times: seconds per image;
- ``bpp`` is the one required series; published paper curves carry only ``bpp`` and
  ``psnr-rgb``, or ``ms-ssim-db-rgb`` (already in dB), and an optional ``meta`` object; the
  plotting tool also reads a file whose top level is the ``results`` object itself;
- ``eval_model --per-image`` writes one file per image and rate point:
  ``{"source": <file stem>, "name", "description", "results": {<the same keys, scalars>}}``.

``ImageResult`` is one image at one rate point (that per-image file); ``CodecResults`` is the
aggregate file; ``aggregate`` turns per-image results into it. Series this module does not
name are kept in ``CodecResults.extra`` and written back; a top-level key it does not know, a
series of another length or a non-number is a ``SchemaError``. JSON has no infinity, so
non-finite values are refused (a lossless point has no PSNR: leave it out).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthq.atomic import write_json
from depthq.errors import SchemaError

PSNR_RGB = "psnr-rgb"
MS_SSIM_RGB = "ms-ssim-rgb"
MS_SSIM_DB_RGB = "ms-ssim-db-rgb"
BPP = "bpp"
ENCODING_TIME = "encoding_time"
DECODING_TIME = "decoding_time"
SERIES = (PSNR_RGB, MS_SSIM_RGB, MS_SSIM_DB_RGB, BPP, ENCODING_TIME, DECODING_TIME)  # eval_model's order
_FIELDS = {  # JSON key -> attribute
    PSNR_RGB: "psnr_rgb",
    MS_SSIM_RGB: "ms_ssim_rgb",
    MS_SSIM_DB_RGB: "ms_ssim_db_rgb",
    BPP: "bpp",
    ENCODING_TIME: "encoding_time",
    DECODING_TIME: "decoding_time",
}
_IMAGE_FIELDS = {k: v for k, v in _FIELDS.items() if k != MS_SSIM_DB_RGB}  # what eval_model measures
_TOP = {"name", "description", "meta", "results"}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise SchemaError(f"{what}: expected a finite number (JSON has no infinity), got {value!r}")
    return float(value)


def _check_ranges(values: Mapping[str, float | None], what: str) -> None:
    bpp, ms_ssim = values.get(BPP), values.get(MS_SSIM_RGB)
    if bpp is not None and not bpp > 0:
        raise SchemaError(f"{what}: bpp must be > 0, got {bpp}")
    if ms_ssim is not None and not 0.0 <= ms_ssim <= 1.0:
        raise SchemaError(f"{what}: ms-ssim-rgb lies in [0, 1], got {ms_ssim}")
    for key in (ENCODING_TIME, DECODING_TIME):
        seconds = values.get(key)
        if seconds is not None and seconds < 0:
            raise SchemaError(f"{what}: {key} is seconds >= 0, got {seconds}")


@dataclass(frozen=True)
class ImageResult:
    """One image coded at one rate point (the ``results`` of an ``eval_model --per-image`` file).

    Attributes:
        source: the image's name (CompressAI: its file's stem).
        bpp: 8 * bytes of its file / (H*W).
        psnr_rgb: PSNR in dB over all of its sub-pixels (finite).
        ms_ssim_rgb: MS-SSIM in [0, 1], or None when not measured (image sides of 160 or less).
        encoding_time, decoding_time: seconds, or None when not measured.
    """

    source: str
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float | None = None
    encoding_time: float | None = None
    decoding_time: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise SchemaError(f"an image result needs a non-empty source name, got {self.source!r}")
        values = {}
        for key, attr in _IMAGE_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                value = _number(value, f"{self.source}: {key}")
                object.__setattr__(self, attr, value)
            values[key] = value
        _check_ranges(values, self.source)

    def results(self) -> dict[str, float]:
        """The ``results`` object: CompressAI's keys in ``eval_model``'s order, unmeasured ones left out."""
        values = {key: getattr(self, attr) for key, attr in _IMAGE_FIELDS.items()}
        return {key: values[key] for key in SERIES if values.get(key) is not None}

    def to_dict(self, name: str, description: str) -> dict[str, Any]:
        """The per-image file of codec ``name`` (``eval_model --per-image``)."""
        return {"source": self.source, "name": name, "description": description, "results": self.results()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageResult:
        """Read a per-image file (its ``name`` and ``description`` are the codec's; not kept here)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("results"), Mapping):
            raise SchemaError(f"a per-image result needs a 'results' object; got {type(data).__name__}")
        unknown = set(data) - _TOP - {"source"}
        if unknown:
            raise SchemaError(f"a per-image result has unknown keys {sorted(unknown)}")
        results = dict(data["results"])
        if set(results) - set(_IMAGE_FIELDS) or BPP not in results or PSNR_RGB not in results:
            raise SchemaError(
                f"a per-image result needs {BPP!r} and {PSNR_RGB!r} and knows {sorted(_IMAGE_FIELDS)}; "
                f"got {sorted(results)}"
            )
        return cls(data.get("source", ""), **{_IMAGE_FIELDS[k]: v for k, v in results.items()})


Series = tuple[float, ...]


@dataclass(frozen=True)
class CodecResults:
    """A codec's rate-distortion curve in CompressAI's results file: means over the images, one
    entry per rate point, every series as long as ``bpp``.

    Attributes:
        name: the curve's label (CompressAI: the architecture, or "JPEG", "WebP").
        description: how it was measured (CompressAI: e.g. "Inference (ans)", "JPEG. Pillow version 7.1.2").
        bpp: mean bits per pixel at each point.
        psnr_rgb: mean PSNR (dB), or None.
        ms_ssim_rgb: mean MS-SSIM in [0, 1], or None.
        ms_ssim_db_rgb: MS-SSIM already in dB (published paper curves), or None.
        encoding_time, decoding_time: mean seconds per image, or None.
        extra: any other series of the file, by key, kept as read.
        meta: the published files' optional ``meta`` object (source, url, dataset, ...), as read.
    """

    name: str
    description: str
    bpp: Series
    psnr_rgb: Series | None = None
    ms_ssim_rgb: Series | None = None
    ms_ssim_db_rgb: Series | None = None
    encoding_time: Series | None = None
    decoding_time: Series | None = None
    extra: dict[str, Series] = field(default_factory=dict)
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"a results file needs a non-empty name, got {self.name!r}")
        if not isinstance(self.description, str):
            raise SchemaError(f"{self.name}: description must be a string, got {self.description!r}")
        series = {key: getattr(self, attr) for key, attr in _FIELDS.items()} | dict(self.extra)
        n = len(self.bpp) if isinstance(self.bpp, Sequence) else -1
        if n < 1:
            raise SchemaError(f"{self.name}: bpp must be a non-empty list of numbers, got {self.bpp!r}")
        extra = {}
        for key, values in series.items():
            if values is None:
                continue
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
                raise SchemaError(f"{self.name}: {key!r} must be a list of {n} numbers (as bpp), got {values!r}")
            series[key] = checked = tuple(_number(v, f"{self.name}: {key}[{i}]") for i, v in enumerate(values))
            if key in _FIELDS:
                object.__setattr__(self, _FIELDS[key], checked)
            else:
                extra[key] = checked
        object.__setattr__(self, "extra", extra)  # a copy: the caller's dict stays theirs
        for i in range(n):
            _check_ranges({k: v[i] for k, v in series.items() if v is not None}, f"{self.name}, point {i}")

    @property
    def points(self) -> int:
        return len(self.bpp)

    def series(self, key: str) -> Series | None:
        """A series by its JSON key; ``"ms-ssim-db-rgb"`` is also derived from ``"ms-ssim-rgb"``
        (-10 log10(1 - v), the scale CompressAI plots)."""
        if key == MS_SSIM_DB_RGB and self.ms_ssim_db_rgb is None and self.ms_ssim_rgb is not None:
            return tuple(math.inf if v == 1.0 else -10.0 * math.log10(1.0 - v) for v in self.ms_ssim_rgb)
        if key in _FIELDS:
            return getattr(self, _FIELDS[key])
        return self.extra.get(key)

    def to_dict(self) -> dict[str, Any]:
        results = {key: list(getattr(self, _FIELDS[key])) for key in SERIES if getattr(self, _FIELDS[key]) is not None}
        results.update({key: list(values) for key, values in self.extra.items()})
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.meta is not None:
            out["meta"] = self.meta
        out["results"] = results
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_name: str | None = None) -> CodecResults:
        """Read a results object; like CompressAI's plotting tool, a top level that is the
        ``results`` object itself is accepted, and ``default_name`` (e.g. the file's stem) stands
        in for a missing name."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a results file holds a JSON object, got {type(data).__name__}")
        if "source" in data:
            raise SchemaError("this is a per-image result (it has a 'source'): read it with ImageResult.from_dict")
        results = data["results"] if "results" in data else data
        top = set(data) - _TOP if "results" in data else set()
        if top:
            raise SchemaError(f"a results file has unknown top-level keys {sorted(top)}; known: {sorted(_TOP)}")
        if not isinstance(results, Mapping) or BPP not in results:
            raise SchemaError(f"a results file needs a 'results' object with a {BPP!r} series; got keys {sorted(data)}")
        if "results" not in data:
            results = {k: v for k, v in results.items() if k not in ("name", "description", "meta")}
        meta = data.get("meta")
        if meta is not None and not isinstance(meta, Mapping):
            raise SchemaError(f"'meta' must be an object, got {meta!r}")
        name = data.get("name", default_name)
        known = {_FIELDS[k]: v for k, v in results.items() if k in _FIELDS}
        extra = {k: v for k, v in results.items() if k not in _FIELDS}
        return cls(name, data.get("description", ""), extra=extra, meta=None if meta is None else dict(meta), **known)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the file (indented JSON, atomically)."""
        return write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | os.PathLike) -> CodecResults:
        """Read a results file; a file without a name is named by its stem, as CompressAI's plot does."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise SchemaError(f"{path}: not JSON ({err})") from None
        try:
            return cls.from_dict(data, default_name=path.name.split(".")[0])
        except SchemaError as err:
            raise SchemaError(f"{path}: {err}") from None


def aggregate(name: str, description: str, points: Sequence[Sequence[ImageResult]]) -> CodecResults:
    """CompressAI's aggregate: at each rate point the mean of every series over its images.

    Args:
        name: the curve's label.
        description: how it was measured.
        points: per rate point, one ``ImageResult`` per image; every point must hold the same
            images (by ``source``). A series some image lacks (e.g. MS-SSIM of an image too small
            for it) is left out of the file for every point, as CompressAI's ``bench --metrics``
            does, rather than averaged over a subset.
    """
    if not points or any(not p for p in points):
        raise ValueError(f"{name}: expected at least one rate point, each with at least one image result")
    sources = sorted(r.source for r in points[0])
    if len(set(sources)) != len(sources):
        raise ValueError(f"{name}: point 0 names an image twice: {sources}")
    for i, point in enumerate(points):
        if sorted(r.source for r in point) != sources:
            raise ValueError(f"{name}: point {i} holds images {sorted(r.source for r in point)}, point 0 {sources}")

    def mean(attr: str) -> Series | None:
        columns = [[getattr(r, attr) for r in point] for point in points]
        complete = all(v is not None for column in columns for v in column)
        return tuple(math.fsum(c) / len(c) for c in columns) if complete else None

    bpp = tuple(math.fsum(r.bpp for r in point) / len(point) for point in points)  # every image has a rate
    return CodecResults(
        name,
        description,
        bpp,
        psnr_rgb=mean("psnr_rgb"),
        ms_ssim_rgb=mean("ms_ssim_rgb"),
        encoding_time=mean("encoding_time"),
        decoding_time=mean("decoding_time"),
    )
