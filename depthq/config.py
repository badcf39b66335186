"""Run configuration: typed dataclasses read from YAML, with command-line overrides.

A run has three sections, each a dataclass validated at construction, and a training recipe::

    recipe: recommended   a named recipe of depthq.presets.RECIPES (default: the recommended one)
    model:  ModelConfig   (depthq.models.config), optionally starting from ``preset: small``
    data:   DataConfig
    train:  TrainConfig

Values are resolved in layers, later ones winning: the dataclass defaults, the model preset, the
recipe (it sets the same keys whichever it is: ``depthq.presets.RECIPE_KEYS``), the file, and the
``--set`` overrides. ``resolve_config`` also says where each value came from (``--print-config``).

``load_config("configs/photos.yaml", ["model.codebook_sizes=[64,64]", "train.steps=500"])`` reads the
file, applies the overrides (values parsed as YAML; ``recipe=paper`` names the recipe), and builds
the dataclasses. Unknown keys, wrong types and out-of-range values raise ``ConfigError`` (a
``ValueError``) naming the key.

Types are strict where a silent conversion could hide a mistake: an int field takes only an
integer (``train.steps=3.0`` or ``1e4`` is refused: write ``3`` or ``10000``); a float field
takes an integer or a float (``1e-4`` included, which YAML reads as text).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depthq.data import ImageDataModule
from depthq.errors import ConfigError, CorruptFileError, MissingFileError
from depthq.models.config import ModelConfig
from depthq.presets import MODELS, RECIPES, RECOMMENDED, recipe_name

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
LR_SCHEDULES = ("constant", "cosine")
#: keys of earlier versions, per section class: refused with the new name in the message
RENAMED = {"ModelConfig": {"levels": "codebook_sizes"}}


@dataclass
class DataConfig:
    """Which images to train and validate on (see ``depthq.data``)."""

    name: str = "photos"
    """Data set: photos, fashion-mnist, cifar10, imagenet32, imagenet64 or folder."""
    root: str | None = None
    """Folder of the data set (default: $DEPTHQ_DATA/<name>; see the documentation's data formats)."""
    batch_size: int = 32
    """Training images per step and device."""
    eval_batch_size: int | None = None
    """Batch size for validation and evaluation (default: batch_size)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    val_fraction: float = 0.05
    """Share of the training split held out for validation (never the test split)."""
    max_val_images: int | None = 1024
    """Cap on the validation images used at each validation (seeded subset); null: all."""
    augment_flip: bool = False
    """Random horizontal flips of training batches (off for likelihood runs)."""
    augment_crop: int = 0
    """Random-crop padding in pixels (0: off)."""
    schedule: list[dict] | None = None
    """Progressive sizes: [{image_size: 32, steps: 10000}, {image_size: 64, steps: 5000}];
    null: one stage at model.image_size for train.steps steps."""
    device_cache_mb: int = 4096
    """On a GPU: keep the uint8 training images there when they take at most this many MiB, and
    gather and augment each batch on the GPU (the same batches as on the CPU); 0 or a larger set:
    batches are built on the CPU, pinned and copied without blocking. Not used on a CPU."""

    def __post_init__(self) -> None:
        check_int("data.batch_size", self.batch_size, 1)
        check_int("data.num_workers", self.num_workers, 0)
        check_int("data.augment_crop", self.augment_crop, 0)
        check_int("data.device_cache_mb", self.device_cache_mb, 0)
        if self.eval_batch_size is not None:
            check_int("data.eval_batch_size", self.eval_batch_size, 1)
        if self.max_val_images is not None:
            check_int("data.max_val_images", self.max_val_images, 1)
        if not 0.0 <= self.val_fraction < 1.0:  # also rejects NaN
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.schedule is not None:
            for i, stage in enumerate(self.schedule):
                if not isinstance(stage, dict) or set(stage) - {"image_size", "steps"}:
                    raise ConfigError(f"data.schedule[{i}] must be a mapping with image_size and steps, got {stage!r}")


@dataclass
class TrainerConfig:
    """What every depthq training loop shares (the autoencoder's ``TrainConfig`` and the learned
    prior's ``PriorTrainConfig``): length, optimiser rate and clipping, devices, seed, cadence."""

    steps: int = 2000
    """Optimizer steps in total (with a schedule: the sum of its stages' steps)."""
    lr: float = 2e-4
    """Peak learning rate (Adam; official code: 2e-4)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many steps."""
    grad_clip: float = 2.0
    """Clip the gradient norm to this value (official code: 2); 0 disables."""
    precision: str | int = "auto"
    """32, bf16-mixed, 16-mixed, or auto: bf16-mixed on CUDA with bf16 and on CPUs with native
    bf16 (AMX / AVX512-BF16), 16-mixed on older GPUs, else 32."""
    accelerator: str = "auto"
    """cpu, gpu or auto."""
    devices: int | str = 1
    """Devices per node (an int, or "auto")."""
    num_nodes: int = 1
    """Nodes for multi-node DDP (torchrun / SLURM set the rest)."""
    strategy: str = "auto"
    """Lightning strategy: auto (DDP when devices > 1), ddp, ddp_spawn, ..."""
    seed: int = 0
    """Fixes data order, initialisation and code re-initialisation."""
    val_every: int = 500
    """Validate every this many steps."""
    checkpoint_every: int = 500
    """Write checkpoints/last.ckpt every this many steps (it is also rewritten after each
    validation)."""
    log_every: int = 25
    """Log training metrics every this many steps."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        for name, low in (
            ("steps", 1),
            ("warmup_steps", 0),
            ("num_nodes", 1),
            ("seed", 0),
            ("val_every", 1),
            ("checkpoint_every", 1),
            ("log_every", 1),
        ):
            check_int(f"train.{name}", getattr(self, name), low)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ConfigError(f"train.grad_clip must be a finite number >= 0 (0 disables), got {self.grad_clip}")
        self.precision = str(self.precision)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.devices, int):
            check_int("train.devices", self.devices, 1)
        elif self.devices != "auto":
            raise ConfigError(f"train.devices must be an int >= 1 or 'auto', got {self.devices!r}")


@dataclass
class TrainConfig(TrainerConfig):
    """How to train the autoencoder (Lightning Trainer settings and the optimisation)."""

    lr_schedule: str = "constant"
    """After the warm-up: "constant" (the official code) or "cosine" decay to
    ``lr * min_lr_ratio`` at the last step."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the cosine schedule, as a fraction of ``lr``."""
    skip_grad_norm: float | None = None
    """Skip (and count) updates whose gradient norm exceeds this, as VDVAE does; null: never."""
    channels_last: bool | None = None
    """Channels-last tensors for the convolutions; null: on whenever mixed precision is."""
    val_every: int = 500
    """Validate (bits/dim, MSE/PSNR, usage, grid) every this many steps."""
    checkpoint_every: int = 500
    """Write checkpoints/last.ckpt every this many steps (it is also rewritten after each
    validation, and best.ckpt when the validation improves)."""
    grid_images: int = 8
    """Images in the reconstruction grids written at each validation."""
    compile: bool = False
    """Run the training forward through ``torch.compile`` (off by default: it compiles for tens
    of seconds first and, on a CPU, was measured not to pay for depthq's models). Validation and
    evaluation run the model uncompiled."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("train.grid_images", self.grid_images, 0)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not (math.isfinite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ConfigError(f"train.min_lr_ratio must be a number in [0, 1], got {self.min_lr_ratio}")
        if self.skip_grad_norm is not None and not (math.isfinite(self.skip_grad_norm) and self.skip_grad_norm > 0):
            raise ConfigError(f"train.skip_grad_norm must be > 0 or null, got {self.skip_grad_norm}")


@dataclass
class RunConfig:
    """A whole run: model, data and training, and the recipe they were resolved with.

    ``RunConfig()`` holds the dataclass defaults (the official model, no recipe);
    ``load_config`` and ``config_from_dict`` resolve the recommended recipe unless told otherwise.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: str | None = None
    """The recipe (``depthq.presets.RECIPES``) whose values were overlaid; None: none (the values
    are the defaults, a preset's and the file's)."""

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    def datamodule(self) -> ImageDataModule:
        """The data module this config describes, checked against the model (ConfigError).

        Reads no data yet: ``prepare_data()`` does (the data layer's own errors then).
        """
        d, m = self.data, self.model
        schedule = d.schedule or [{"image_size": m.image_size, "steps": self.train.steps}]
        total = sum(stage.get("steps") or 0 for stage in schedule)
        if d.schedule and total != self.train.steps:
            raise ConfigError(
                f"data.schedule has {total} steps in all but train.steps is {self.train.steps}: make them equal"
            )
        for i, stage in enumerate(schedule):
            try:
                m.check_image_size(stage["image_size"])
            except ValueError as err:
                raise ConfigError(f"data.schedule[{i}]: {err}") from None
        try:
            dm = ImageDataModule(
                d.name,
                root=d.root,
                batch_size=d.batch_size,
                num_workers=d.num_workers,
                seed=self.train.seed,
                val_fraction=d.val_fraction,
                augment_flip=d.augment_flip,
                augment_crop=d.augment_crop,
                schedule=schedule,
                eval_batch_size=d.eval_batch_size,
                max_val_images=d.max_val_images,
                device_cache_mb=d.device_cache_mb,
            )
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"data: {err}") from err
        if dm.num_channels != m.image_channels:
            raise ConfigError(
                f"data {d.name!r} has {dm.num_channels} channel(s) but model.image_channels is {m.image_channels}"
            )
        return dm


def check_int(key: str, value: Any, low: int, high: int | None = None) -> None:
    """ConfigError unless ``value`` is an int (not a bool) >= ``low`` (and <= ``high``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{key} must be an int {bound}, got {value!r}")


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a field annotation (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, annotation)


def build_section(cls: type, values: Any, prefix: str) -> Any:
    """A config dataclass from a mapping, rejecting unknown keys and wrong types by name
    (``ConfigError`` naming ``prefix.key``); the dataclass's own checks run last."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix} must be a mapping, got {type(values).__name__}: {values!r}")
    values = dict(values)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for old, new in RENAMED.get(cls.__name__, {}).items():
        if old in values:
            raise ConfigError(f"{prefix}.{old} was renamed {prefix}.{new}: write {new}: {values[old]!r}")
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'{prefix}.{k}' for k in unknown)}; valid keys in {prefix}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if isinstance(value, str) and _type_ok(0.5, hint):
            try:  # PyYAML reads 1e-4 and 1e4 (no dot, no sign) as strings
                value = float(value)
            except ValueError:
                pass
        if not _type_ok(value, hint):
            hint_text = _type_name(hint)
            if isinstance(value, float) and _type_ok(1, hint) and value.is_integer():
                raise ConfigError(
                    f"{prefix}.{key} must be an int, got the float {value!r}: write "
                    f"{int(value)} (int fields take integers only)"
                )
            raise ConfigError(f"{prefix}.{key} must be of type {hint_text}, got {type(value).__name__}: {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # the model's own checks (depthq.models.config)
        raise ConfigError(str(err)) from err


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.codebook_sizes=[64,64]"`` -> (["model", "codebook_sizes"], [64, 64]); values parsed as
    YAML. ``recipe=NAME`` names the run's recipe."""
    if "=" not in text:
        raise ConfigError(f"an override is KEY=VALUE, e.g. model.codebook_sizes=[64,64]; got {text!r}")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if len(path) < 2 and path != [RECIPE_KEY]:
        raise ConfigError(
            f"override keys name a section and a field, e.g. train.steps=100, or the recipe (recipe=paper); got {key!r}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse the value of override {key!r}: {raw!r} ({err})") from None
    return path, value


def apply_overrides(tree: dict, overrides: Sequence[str]) -> dict:
    """Set ``section.field=value`` entries in a nested dict (copied)."""
    tree = yaml.safe_load(yaml.safe_dump(tree)) if tree else {}
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return tree


RECIPE_KEY = "recipe"
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
#: the default recipe of ``load_config`` / ``config_from_dict``
DEFAULT_RECIPE: str | None = RECOMMENDED


@dataclass(frozen=True)
class ResolvedConfig:
    """A resolved run config and where each of its values came from."""

    config: RunConfig
    sources: dict[str, str]
    """``"section.key"`` -> "default", "preset NAME", "recipe NAME", the file, or "--set"."""


def _sections_of(tree: Any, origin: str) -> dict[str, dict]:
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{origin}: a run config is a mapping with recipe, model, data and train; got {type(tree).__name__}"
        )
    unknown = sorted(set(tree) - set(SECTIONS) - {RECIPE_KEY})
    if unknown:
        raise ConfigError(
            f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; valid "
            f"sections: {RECIPE_KEY}, {', '.join(SECTIONS)}"
        )
    out = {}
    for name in SECTIONS:
        values = tree.get(name)
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{name} must be a mapping, got {type(values).__name__}: {values!r}")
        out[name] = dict(values or {})
    return out


def resolve_tree(
    tree: Any, overrides: Sequence[str] = (), *, origin: str = "config", default_recipe: str | None = DEFAULT_RECIPE
) -> ResolvedConfig:
    """The run config of ``tree`` (a mapping as in a YAML file) and ``overrides``, resolved in
    layers: defaults < ``model.preset`` < the recipe < ``tree`` (named ``origin``) < overrides.

    The recipe is the ``recipe`` key of the overrides or of ``tree``, else ``default_recipe``;
    ``null`` (or ``default_recipe=None``) overlays none.
    """
    given = _sections_of(tree, origin)
    forced_tree = apply_overrides({}, overrides)
    forced = _sections_of(forced_tree, "--set")
    chosen = forced_tree.get(RECIPE_KEY, (tree or {}).get(RECIPE_KEY, default_recipe))
    recipe = None
    if chosen is not None:
        try:
            recipe = recipe_name(str(chosen))
        except ValueError as err:
            raise ConfigError(f"{RECIPE_KEY}: {err}") from None
    preset = forced["model"].pop("preset", None) if "preset" in forced.get("model", {}) else None
    preset = preset if preset is not None else given.get("model", {}).pop("preset", None)
    given.get("model", {}).pop("preset", None)
    if preset is not None and preset not in MODELS:
        raise ConfigError(f"model.preset: unknown preset {preset!r}; choose one of {sorted(MODELS)}")
    layers: list[tuple[str, dict[str, dict]]] = []
    if preset is not None:
        layers.append((f"preset {preset}", {"model": MODELS[preset].settings()}))
    if recipe is not None:
        layers.append((f"recipe {recipe}", RECIPES[recipe].settings()))
    layers += [(origin, given), ("--set", forced)]
    merged: dict[str, dict] = {name: {} for name in SECTIONS}
    sources: dict[str, str] = {}
    for source, sections in layers:
        for name, values in sections.items():
            for key, value in values.items():
                merged[name][key] = value
                sources[f"{name}.{key}"] = source
    config = RunConfig(
        **{name: build_section(cls, merged[name], name) for name, cls in SECTIONS.items()}, recipe=recipe
    )
    for name, section in config.to_dict().items():
        if isinstance(section, dict):
            for key in section:
                sources.setdefault(f"{name}.{key}", "default")
    return ResolvedConfig(config, sources)


def config_from_dict(tree: dict | None, *, default_recipe: str | None = DEFAULT_RECIPE) -> RunConfig:
    """A validated RunConfig from a nested dict (see ``resolve_tree``; unknown sections are errors)."""
    return resolve_tree(tree, default_recipe=default_recipe).config


def saved_run_config(tree: Any, origin: str) -> RunConfig:
    """A RunConfig from a file depthq wrote (config.json, a checkpoint): keys of earlier versions
    are upgraded (``model.levels``), no recipe is overlaid (its values are in the file, and a
    file without a ``recipe`` key was written before recipes existed); anything invalid is a
    CorruptFileError naming ``origin``."""
    try:
        tree = dict(tree)
        model = dict(tree.get("model") or {})
        for cls_renames in RENAMED.values():
            for old, new in cls_renames.items():
                if old in model and new not in model:
                    model[new] = model.pop(old)
        return config_from_dict({**tree, "model": model}, default_recipe=None)
    except (TypeError, ValueError) as err:
        raise CorruptFileError(f"{origin}: the saved run config is not valid ({err})") from err


def read_config_file(path: str | os.PathLike) -> dict:
    """The mapping of a YAML run config, with one-line errors for a missing, broken or empty file.

    An empty file is refused: it would silently train the default (official, 44.6M-parameter)
    model, which is almost surely not what was meant; omit the file for all defaults.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"config file {path} not found (presets are in configs/)")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if tree is None:
        raise ConfigError(
            f"config file {path} is empty: it would train the default official model "
            "(44.6M parameters) on the photos, almost surely not what was meant; write "
            "the settings you want (see configs/), or give no --config for all defaults"
        )
    if not isinstance(tree, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping with model, data and train sections, got a {type(tree).__name__}"
        )
    return tree


def resolve_config(
    path: str | os.PathLike | None, overrides: Sequence[str] = (), *, default_recipe: str | None = DEFAULT_RECIPE
) -> ResolvedConfig:
    """``load_config`` with where each value came from (what ``--print-config`` shows)."""
    tree = {} if path is None else read_config_file(path)
    return resolve_tree(
        tree, overrides, origin="defaults" if path is None else str(path), default_recipe=default_recipe
    )


def load_config(
    path: str | os.PathLike | None, overrides: Sequence[str] = (), *, default_recipe: str | None = DEFAULT_RECIPE
) -> RunConfig:
    """Read a YAML run config (None: all defaults) and apply ``section.key=value`` overrides;
    the recipe is the file's ``recipe:`` key (or ``recipe=NAME`` among the overrides), else
    ``default_recipe`` (the recommended one)."""
    return resolve_config(path, overrides, default_recipe=default_recipe).config


def dump_config(config: RunConfig, sources: dict[str, str] | None = None) -> str:
    """The resolved config as YAML (readable back by ``load_config``); with ``sources``, each
    value is followed by a comment saying where it came from."""
    tree = config.to_dict()
    if sources is None:
        return yaml.safe_dump(tree, sort_keys=False)
    recipe = tree.pop(RECIPE_KEY)
    described = "none overlaid" if recipe is None else RECIPES[recipe].description
    if recipe == RECOMMENDED:
        described = f"the recommended recipe: {described}"
    lines = [f"{RECIPE_KEY}: {yaml.safe_dump(recipe, default_flow_style=True).splitlines()[0]}  # {described}"]
    for name, section in tree.items():
        lines.append(f"{name}:")
        for key, value in section.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=1 << 16).strip()[1:-1]
            lines.append(f"  {text}  # {sources.get(f'{name}.{key}', 'default')}")
    return "\n".join(lines) + "\n"
