"""What an evaluation returns: typed figures, labelled, with JSON only at the file edge.

::

    EvalResult
      images, dims, data, split, precision, mse, psnr
      likelihood: Likelihood | None        -log p(x|z): the distortion (None for the mse head)
      rates: tuple[Rate, ...]              the codes' rate under each named prior, uniform first
      levels: tuple[LevelStats, ...]       usage, entropy, MI, effective information per level
      options: EvalOptions                 what it ran with
      source: RunSource | None             the run and weights it came from
      anchors, codec: ResultSection | None figures of other modules (codec anchors, file sizes)

Every bits/dim figure is a ``BitsFigure`` carrying its label and its prior's description
(``result.figures``). A figure that does not apply is decided by type: ``result.total("uniform")``
is None for the mse head (no likelihood), ``result.rate("empirical")`` is None when no empirical
prior was fitted, ``level.mean_offdiagonal_mi`` is None for one codebook. A prior name that
depthq does not know raises, so a typo never reads as "not measured".

``to_dict`` / ``from_dict`` carry a schema version; ``from_dict`` refuses files of an unknown
or newer schema and any missing or unknown field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from depthq.errors import SchemaError
from depthq.evaluate.options import EvalOptions, fields_of
from depthq.evaluate.sections import SECTIONS, ResultSection, read_section, register_section

SCHEMA = "depthq.eval"
#: 1 was the untyped dict of depthq 0.1 (no "schema_version" key); 2 is this module's layout
SCHEMA_VERSION = 2
#: priors a rate can be named after; a name outside this tuple is a typo and raises
PRIORS = ("uniform", "empirical", "learned")
LN2 = math.log(2.0)

DISTORTION_LABEL = "distortion bits/dim (paper convention)"


def psnr(mse: float, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error in pixel units."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


@dataclass(frozen=True)
class RunSource:
    """The run a result came from (None fields: not from a saved run)."""

    run_dir: str | None
    weights: str | None
    step: int | None
    parameters: int
    quantizer: str
    weights_digest: str | None = None
    """``state_digest`` of the evaluated weights (what a learned prior must have been trained on)."""
    prior: str | None = None
    """Folder of the learned prior of the ``learned`` rate; None: no learned prior."""
    prior_digest: str | None = None
    """``state_digest`` of that prior."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> RunSource:
        return cls(**fields_of(cls, values, "source"))


@dataclass(frozen=True)
class Likelihood:
    """-log p(x|z) of the evaluated images: the distortion term."""

    nats_per_image: float
    dims: int

    @property
    def bits_per_dim(self) -> float:
        return self.nats_per_image / (self.dims * LN2)

    def to_dict(self) -> dict:
        return {"nats_per_image": self.nats_per_image, "dims": self.dims, "bits_per_dim": self.bits_per_dim}

    @classmethod
    def from_dict(cls, values: Mapping) -> Likelihood:
        return cls(**fields_of(cls, values, "likelihood", derived=("bits_per_dim",)))


@dataclass(frozen=True)
class Rate:
    """-log2 p(z) per image under a named prior."""

    prior: str
    """One of ``PRIORS``: uniform, empirical, learned."""
    description: str
    """How the prior was made (printed next to every figure that uses it)."""
    bits_per_image: float

    def __post_init__(self) -> None:
        _check_prior(self.prior)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> Rate:
        return cls(**fields_of(cls, values, "rate", derived=("bits_per_dim",)))


@dataclass(frozen=True)
class BitsFigure:
    """One labelled bits/dim figure, e.g. "total bits/dim, uniform prior" = 7.36."""

    key: str
    """Stable identifier: distortion, rate_<prior>, total_<prior>."""
    label: str
    bits_per_dim: float
    prior: str | None
    """The prior's description (None for the distortion, which has no prior)."""


@dataclass(frozen=True)
class LevelStats:
    """Code usage and information of one hierarchy level, over every image and position.

    Entropies are in nats with the evaluation's estimator (plug-in or Miller-Madow); the
    perplexities are their exponentials. ``joint_entropy`` is the entropy of a position's
    whole M-tuple, the level's effective information per position (= the sum of the codebooks'
    entropies minus their total correlation). A plug-in joint entropy cannot exceed log N for N
    samples (``information_cap_bits``): an estimate near that cap says the sample is too small
    to measure more, not that the codes carry no more.
    """

    level: int
    codebook_size: int
    codebooks: int
    """Codebooks that code one position: M, or 1 for VQ."""
    positions: int
    """Positions per image (h * w)."""
    samples: int
    """N: positions seen over the evaluated images."""
    entropies: tuple[float, ...]
    perplexities: tuple[float, ...]
    used_fractions: tuple[float, ...]
    dead_codes: tuple[int, ...]
    joint_entropy: float
    position_entropy: float | None = None
    """Mean of the entropy map (nats per codebook and position); None when not measured."""
    mutual_information: tuple[tuple[float, ...], ...] | None = None
    """(M, M) pairwise MI in nats, entropies on the diagonal; None for M = 1 or not measured."""
    entropy_map: tuple[tuple[tuple[float, ...], ...], ...] | None = None
    """(M, h, w) entropy per codebook and position, nats; None when not measured."""
    nonfinite: int = 0
    """Encoder vectors (one per codebook and position, over the N positions) with a NaN or
    infinite component: the quantizer gave them code 0. Zero for a healthy model."""

    @property
    def capacity_bits(self) -> float:
        """What a position can carry: codebooks * log2 K."""
        return self.codebooks * math.log2(self.codebook_size)

    @property
    def information_bits(self) -> float:
        """Effective information per position in bits: the joint entropy of the M-tuple."""
        return self.joint_entropy / LN2

    @property
    def information_cap_bits(self) -> float:
        """log2 N: the most a plug-in joint entropy of N samples can show."""
        return math.log2(max(self.samples, 1))

    @property
    def information_fraction(self) -> float:
        """Effective information as a fraction of the capacity (1: every code combination used)."""
        return self.information_bits / self.capacity_bits if self.capacity_bits > 0 else 0.0

    @property
    def total_correlation(self) -> float | None:
        """sum_m H(z_m) - H(z_1..z_M) in nats; None for one codebook (nothing to share)."""
        return sum(self.entropies) - self.joint_entropy if self.codebooks > 1 else None

    @property
    def mean_offdiagonal_mi(self) -> float | None:
        """Mean pairwise MI (nats) over the pairs i < j; None for one codebook or not measured."""
        if self.mutual_information is None:
            return None
        m = len(self.mutual_information)
        pairs = [self.mutual_information[i][j] for i in range(m) for j in range(i + 1, m)]
        return sum(pairs) / len(pairs)

    @property
    def mean_entropy(self) -> float:
        return sum(self.entropies) / len(self.entropies)

    @property
    def mean_perplexity(self) -> float:
        return sum(self.perplexities) / len(self.perplexities)

    @property
    def mean_used_fraction(self) -> float:
        return sum(self.used_fractions) / len(self.used_fractions)

    @property
    def code_vectors(self) -> int:
        return self.codebooks * self.codebook_size

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(
            capacity_bits=self.capacity_bits,
            information_bits=self.information_bits,
            information_cap_bits=self.information_cap_bits,
            total_correlation=self.total_correlation,
            mean_offdiagonal_mi=self.mean_offdiagonal_mi,
        )
        return out

    @classmethod
    def from_dict(cls, values: Mapping) -> LevelStats:
        kwargs = fields_of(
            cls,
            values,
            "levels[]",
            derived=(
                "capacity_bits",
                "information_bits",
                "information_cap_bits",
                "total_correlation",
                "mean_offdiagonal_mi",
            ),
        )
        for name in ("entropies", "perplexities", "used_fractions", "dead_codes"):
            kwargs[name] = tuple(kwargs[name])
        if kwargs["mutual_information"] is not None:
            kwargs["mutual_information"] = tuple(tuple(row) for row in kwargs["mutual_information"])
        if kwargs["entropy_map"] is not None:
            kwargs["entropy_map"] = tuple(tuple(tuple(r) for r in m) for m in kwargs["entropy_map"])
        return cls(**kwargs)


@dataclass(frozen=True)
class EvalResult:
    """Every figure of one evaluation (see the module docstring)."""

    images: int
    dims: int
    """C * H * W of one image."""
    data: str
    split: str
    precision: str
    mse: float
    """Mean squared error of the mean of p(x|z), in pixel levels^2."""
    psnr: float
    likelihood: Likelihood | None
    rates: tuple[Rate, ...]
    levels: tuple[LevelStats, ...]
    options: EvalOptions
    source: RunSource | None = None
    anchors: ResultSection | None = None
    codec: ResultSection | None = None
    colour_bias: tuple[float, ...] | None = None
    """Per channel, the mean over the images of |the image's mean of (decoded - original)|, in
    levels (``depthq.evaluate.quality.colour_bias``): how tinted a reconstruction is, either way."""
    colour_shift: tuple[float, ...] | None = None
    """Per channel, the mean over the images of the image's mean of (decoded - original): a tint
    the images share. Both None in results written before depthq 0.2 measured them."""

    def __post_init__(self) -> None:
        names = [r.prior for r in self.rates]
        if len(set(names)) != len(names):
            raise ValueError(f"each prior may give one rate, got {names}")

    # -- figures ---------------------------------------------------------------------------------

    @property
    def distortion(self) -> float | None:
        """Distortion bits/dim (paper convention); None for the mse head."""
        return None if self.likelihood is None else self.likelihood.bits_per_dim

    def rate(self, prior: str) -> Rate | None:
        """The rate under ``prior`` (one of ``PRIORS``), None when that prior was not measured."""
        _check_prior(prior)
        return next((r for r in self.rates if r.prior == prior), None)

    def rate_bpd(self, prior: str) -> float | None:
        rate = self.rate(prior)
        return None if rate is None else rate.bits_per_image / self.dims

    def total(self, prior: str) -> float | None:
        """Distortion + rate in bits/dim; None without a likelihood or without that prior."""
        rate = self.rate(prior)
        if rate is None or self.likelihood is None:
            return None
        return self.likelihood.bits_per_dim + rate.bits_per_image / self.dims

    @property
    def figures(self) -> tuple[BitsFigure, ...]:
        """Every bits/dim figure, labelled: distortion, then each prior's rate and total."""
        out = []
        if self.likelihood is not None:
            out.append(BitsFigure("distortion", DISTORTION_LABEL, self.likelihood.bits_per_dim, None))
        for r in self.rates:
            out.append(
                BitsFigure(
                    f"rate_{r.prior}", f"rate bits/dim, {r.prior} prior", r.bits_per_image / self.dims, r.description
                )
            )
            total = self.total(r.prior)  # None without a likelihood
            if total is not None:
                out.append(BitsFigure(f"total_{r.prior}", f"total bits/dim, {r.prior} prior", total, r.description))
        return tuple(out)

    def code_rate_bpp(self, image_channels: int) -> float:
        """The codes' rate in bits per pixel (H*W): the empirical prior's, else the uniform one's."""
        rate = self.rate("empirical") or self.rate("uniform")
        if rate is None:
            raise ValueError("the result has no rate")
        return rate.bits_per_image * image_channels / self.dims

    @property
    def min_perplexity_fraction(self) -> float:
        """The smallest test perplexity over every codebook of every level, as a fraction of its K."""
        return min(math.exp(h) / lv.codebook_size for lv in self.levels for h in lv.entropies)

    @property
    def min_information_fraction(self) -> float:
        """The smallest level's effective information per position, as a fraction of its capacity."""
        return min(lv.information_fraction for lv in self.levels)

    @property
    def selection(self) -> float:
        """What best-model choice minimises: total bits/dim with the uniform prior, or the MSE
        for a head without likelihood."""
        total = self.total("uniform")
        return self.mse if total is None else total

    @property
    def selection_label(self) -> str:
        return "MSE" if self.likelihood is None else "total bits/dim, uniform prior"

    @property
    def sections(self) -> tuple[ResultSection, ...]:
        return tuple(s for s in (self.anchors, self.codec) if s is not None)

    def with_sections(self, **sections: ResultSection | None) -> EvalResult:
        """A copy with ``anchors`` and/or ``codec`` set."""
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise TypeError(f"expected sections among {SECTIONS}, got {sorted(unknown)}")
        changes: dict[str, Any] = dict(sections)  # ResultSection | None: the type of both fields
        return dataclasses.replace(self, **changes)

    # -- logging -----------------------------------------------------------------------------

    def metrics(self, prefix: str = "val/") -> dict[str, float]:
        """Flat scalar metrics for loggers (metrics.csv, TensorBoard); names in ``metric_name``."""
        out = {f"{prefix}mse": self.mse, f"{prefix}psnr": self.psnr, f"{prefix}selection": self.selection}
        if self.colour_bias is not None:
            out[f"{prefix}colour_bias_max"] = max(self.colour_bias)
        for fig in self.figures:
            out[metric_name(fig.key, prefix=prefix)] = fig.bits_per_dim
        for lv in self.levels:
            i = lv.level
            out[f"{prefix}perplexity_l{i}"] = lv.mean_perplexity
            out[f"{prefix}used_fraction_l{i}"] = lv.mean_used_fraction
            out[metric_name("info_bits", i, prefix=prefix)] = lv.information_bits
            out[metric_name("info_fraction", i, prefix=prefix)] = lv.information_fraction
            for m, (p, u) in enumerate(zip(lv.perplexities, lv.used_fractions)):
                out[f"{prefix}perplexity_l{i}_c{m}"] = p
                out[f"{prefix}used_fraction_l{i}_c{m}"] = u
        return out

    # -- the file edge -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "images": self.images,
            "dims": self.dims,
            "data": self.data,
            "split": self.split,
            "precision": self.precision,
            "mse": self.mse,
            "psnr": self.psnr,
            "likelihood": None if self.likelihood is None else self.likelihood.to_dict(),
            "rates": [{**r.to_dict(), "bits_per_dim": r.bits_per_image / self.dims} for r in self.rates],
            "figures": [dataclasses.asdict(f) for f in self.figures],
            "selection": {"label": self.selection_label, "value": self.selection},
            "levels": [lv.to_dict() for lv in self.levels],
            "options": self.options.to_dict(),
            "source": None if self.source is None else self.source.to_dict(),
            "anchors": None if self.anchors is None else self.anchors.to_dict(),
            "codec": None if self.codec is None else self.codec.to_dict(),
            "colour_bias": None if self.colour_bias is None else list(self.colour_bias),
            "colour_shift": None if self.colour_shift is None else list(self.colour_shift),
        }

    @classmethod
    def from_dict(cls, values: Mapping, *, origin: str = "the result") -> EvalResult:
        """Read ``to_dict`` output; SchemaError for another schema or a missing/unknown field."""
        if not isinstance(values, Mapping):
            raise SchemaError(f"{origin} is not a JSON object")
        version = values.get("schema_version")
        if values.get("schema") != SCHEMA or not isinstance(version, int):
            raise SchemaError(
                f"{origin} is not a depthq evaluation of schema {SCHEMA_VERSION} "
                "(written by depthq 0.1 or another tool): evaluate again"
            )
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{origin} has schema version {version}, newer than this depthq reads "
                f"({SCHEMA_VERSION}): upgrade depthq"
            )
        if version < SCHEMA_VERSION:
            raise SchemaError(f"{origin} has schema version {version}, older than {SCHEMA_VERSION}: evaluate again")
        try:
            kwargs = fields_of(cls, values, "result", derived=("schema", "schema_version", "figures", "selection"))
            kwargs["likelihood"] = None if kwargs["likelihood"] is None else Likelihood.from_dict(kwargs["likelihood"])
            kwargs["rates"] = tuple(Rate.from_dict(r) for r in kwargs["rates"])
            kwargs["levels"] = tuple(LevelStats.from_dict(lv) for lv in kwargs["levels"])
            kwargs["options"] = EvalOptions.from_dict(kwargs["options"])
            kwargs["source"] = None if kwargs["source"] is None else RunSource.from_dict(kwargs["source"])
            for key in ("colour_bias", "colour_shift"):
                value = kwargs.get(key)
                kwargs[key] = None if value is None else tuple(float(v) for v in value)
            for kind in SECTIONS:
                kwargs[kind] = read_section(kind, kwargs[kind])
            return cls(**kwargs)
        except SchemaError as err:
            raise SchemaError(f"{origin}: {err}") from None
        except (TypeError, ValueError) as err:
            raise SchemaError(f"{origin}: {err}") from err


def metric_name(figure: str, level: int | None = None, *, prefix: str = "val/") -> str:
    """Logger name of a figure: ``val/total_uniform_bpd``, ``val/info_bits_l0``..."""
    if level is None:
        return f"{prefix}{figure}_bpd"
    return f"{prefix}{figure}_l{level}"


def _check_prior(prior: str) -> None:
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; expected one of {PRIORS}")


__all__ = [
    "DISTORTION_LABEL",
    "PRIORS",
    "SCHEMA_VERSION",
    "SECTIONS",
    "BitsFigure",
    "EvalOptions",
    "EvalResult",
    "LevelStats",
    "Likelihood",
    "Rate",
    "ResultSection",
    "RunSource",
    "metric_name",
    "psnr",
    "register_section",
]
