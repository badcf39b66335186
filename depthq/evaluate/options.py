"""How an evaluation runs: ``EvalOptions``, validated once, recorded in every result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from depthq.errors import ConfigError, SchemaError
from depthq.evaluate.information import CORRECTIONS

SPLITS = ("train", "val", "test")
PRECISIONS = ("32", "bf16", "16")


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs. The figure-changing ones are compared by ``same_figures``."""

    split: str = "test"
    """Split of the data set: test, val (held out of train) or train."""
    weights: str | None = "model.safetensors"
    """Weights file of the run (None: a model in memory, e.g. validation during training)."""
    prior_images: int | None = 8192
    """Training images the empirical prior is fitted on (seeded subset); 0: none; None: all."""
    batch_size: int = 256
    precision: str = "32"
    """Autocast of the networks: 32, bf16 or 16 (statistics are fp32/fp64 regardless)."""
    correction: str = "none"
    """Entropy/MI estimator: "none" (plug-in) or "miller-madow"."""
    diagnostics: bool = True
    """Also the pairwise MI matrices and the entropy maps (costlier than the rest)."""
    device: str = "cpu"
    data: str | None = None
    """Evaluate on this data set instead of the run's own."""
    root: str | None = None
    """Folder of that data set."""
    prior: str | None = "auto"
    """Learned prior of the ``learned`` rate: "auto" (the run's own ``RUN_DIR/prior`` when one was
    trained for these weights), the folder of a prior, or None (no learned prior)."""
    anchors: bool = True
    """Also measure PNG, WebP and JPEG on the evaluated images (cached; a saved run's evaluation only)."""
    codec_images: int = 0
    """Compress the first N evaluated images to real .dqz files (needs a learned prior); 0: no."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.prior_images is not None and (not isinstance(self.prior_images, int) or self.prior_images < 0):
            raise ConfigError(
                f"prior_images must be an int >= 0 (0: no empirical prior) or None, got {self.prior_images!r}"
            )
        if isinstance(self.codec_images, bool) or not isinstance(self.codec_images, int) or self.codec_images < 0:
            raise ConfigError(f"codec_images must be an int >= 0 (0: no codec measurement), got {self.codec_images!r}")
        if self.prior is not None and (not isinstance(self.prior, str) or not self.prior):
            raise ConfigError(f"prior must be 'auto', a prior's folder or None, got {self.prior!r}")

    FIGURE_FIELDS = (
        "split",
        "weights",
        "prior_images",
        "precision",
        "correction",
        "data",
        "root",
        "prior",
        "anchors",
        "codec_images",
    )

    def same_figures(self, other: EvalOptions) -> bool:
        """Whether an evaluation with ``other`` gives the same figures (batch size and device
        do not change them beyond rounding)."""
        return all(getattr(self, f) == getattr(other, f) for f in self.FIGURE_FIELDS)

    @property
    def estimator(self) -> str:
        """The entropy estimator's name, as printed next to the figures."""
        return "plug-in" if self.correction == "none" else "Miller-Madow"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> EvalOptions:
        return cls(**fields_of(cls, values, "options"))


def fields_of(cls: type, values: Mapping, where: str, derived: tuple[str, ...] = ()) -> dict[str, Any]:
    """The constructor arguments of dataclass ``cls`` from ``values``: every field without a
    default must be there, and no key other than fields and ``derived`` (written for readers)."""
    if not isinstance(values, Mapping):
        raise SchemaError(f"{where}: expected an object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields) - set(derived))
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {unknown} (renamed? expected {sorted(fields)})")
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise SchemaError(f"{where}: missing field(s) {missing}")
    return {k: v for k, v in values.items() if k in fields}
