"""Every YAML preset in configs/ parses into a valid RunConfig."""

from pathlib import Path

import pytest

from depthq.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_there_are_presets():
    assert {p.stem for p in CONFIGS} >= {"photos", "fashion-mnist", "cifar10", "imagenet32",
                                         "imagenet64", "progressive"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_preset_is_valid(path):
    config = load_config(path)
    schedule = config.data.schedule or [{"image_size": config.model.image_size, "steps": config.train.steps}]
    assert sum(s["steps"] for s in schedule) == config.train.steps
    for stage in schedule:
        config.model.check_image_size(stage["image_size"])
    if config.data.name == "fashion-mnist":
        assert config.model.image_channels == 1 and config.model.image_size == 28


def test_renamed_model_key_is_refused_with_its_new_name():
    import pytest

    from depthq.config import config_from_dict
    from depthq.models import ModelConfig

    with pytest.raises(ValueError, match=r"model.levels was renamed model.codebook_sizes"):
        config_from_dict({"model": {"levels": [8, 8]}})
    # weights saved before the rename still load
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "codebook_sizes"} | {"levels": [8, 8, 8]}
    assert ModelConfig.from_dict(old).codebook_sizes == [8, 8, 8]


def test_an_empty_config_file_is_refused_saying_why(tmp_path):
    from depthq.errors import ConfigError

    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.yaml is empty: it would train the default official model"):
        load_config(path)
    path.write_text("- model\n- data\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_broken_yaml_names_the_file_and_the_line(tmp_path):
    from depthq.errors import ConfigError

    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  preset: tiny\ntrain: {steps: 3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML at line \d+, column \d+"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.steps=3.0", "train.steps=1e4", "data.batch_size=8.0"])
def test_int_fields_take_integers_only(override):
    from depthq.errors import ConfigError

    with pytest.raises(ConfigError, match=r"must be an int|must be of type int"):
        load_config(None, [override])


def test_float_fields_take_integers_and_exponents():
    config = load_config(None, ["train.lr=1e-4", "train.grad_clip=3", "train.steps=10_000"])
    assert config.train.lr == 1e-4 and config.train.grad_clip == 3 and config.train.steps == 10_000


def test_a_model_check_is_a_config_error_naming_the_key():
    from depthq.errors import ConfigError

    with pytest.raises(ConfigError, match="model.stride must be 2 or 4"):
        load_config(None, ["model.stride=3"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_trains_the_recommended_recipe(path):
    from depthq.config import resolve_config
    from depthq.presets import RECIPE_KEYS, RECIPES, RECOMMENDED

    resolved = resolve_config(path)
    assert resolved.config.recipe == RECOMMENDED
    recipe = RECIPES[RECOMMENDED].values
    for section, key in RECIPE_KEYS:  # no file value hides the recipe's
        assert getattr(getattr(resolved.config, section), key) == recipe[section][key]
        assert resolved.sources[f"{section}.{key}"] == f"recipe {RECOMMENDED}"


def test_print_config_shows_the_recipe_and_where_each_value_came_from(capsys):
    from depthq.cli import main

    assert main(["train", "-c", "configs/photos.yaml", "--set", "train.steps=7", "--print-config"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("recipe: all+mse  # the recommended recipe")
    assert "  beta: 1.0  # recipe all+mse" in lines
    assert "  lr_schedule: cosine  # recipe all+mse" in lines
    assert "  channels: 64  # configs/photos.yaml" in lines
    assert "  steps: 7  # --set" in lines
    assert "  decay: 0.99  # default" in lines
    # what it prints reads back as the same config
    import yaml

    from depthq.config import config_from_dict, load_config

    assert config_from_dict(yaml.safe_load(out)) == load_config("configs/photos.yaml", ["train.steps=7"])


def test_recipe_paper_gives_the_official_settings_and_presets_come_first(tmp_path):
    from depthq.config import resolve_config

    path = tmp_path / "paper.yaml"
    path.write_text("recipe: paper\nmodel: {preset: small, num_codebooks: 2}\n")
    resolved = resolve_config(path)
    config = resolved.config
    assert config.recipe == "paper"
    assert (config.train.lr, config.train.lr_schedule, config.model.mse_weight) == (2e-4, "constant", 0.0)
    assert (config.model.beta, config.model.commitment, config.model.kmeans_init) == (0.25, "sum", False)
    # the official normalisation: each codebook's mean commitment summed, beta x M in depthq's
    assert config.model.commitment_weight == 0.25 * 2
    assert resolved.sources["model.channels"] == "preset small"
    assert resolved.sources["model.num_codebooks"] == str(path)
    # --set wins over the file, and can name the recipe
    over = resolve_config(path, ["recipe=v0.1", "train.lr=3e-3"])
    assert over.config.recipe == "v0.1" and over.config.train.lr == 3e-3 and over.sources["train.lr"] == "--set"
    assert resolve_config(path, ["recipe=null"]).config.recipe is None


def test_unknown_recipes_and_presets_are_refused_naming_the_choices():
    from depthq.config import load_config
    from depthq.errors import ConfigError

    with pytest.raises(ConfigError, match=r"recipe: unknown recipe 'fastest'; choose one of \['recommended', 'paper'"):
        load_config(None, ["recipe=fastest"])
    with pytest.raises(ConfigError, match="model.preset: unknown preset 'huge'"):
        load_config(None, ["model.preset=huge"])


def test_the_shipped_photos_config_trains_with_its_recipe(tmp_path):
    """A few steps of configs/photos.yaml as it ships: k-means seeded codebooks, the cosine
    schedule from the recipe's peak rate, and the auxiliary squared error in the loss."""
    import csv

    from depthq.config import load_config
    from depthq.presets import RECIPES, RECOMMENDED
    from depthq.train import train
    from depthq.runtime.schedule import lr_factor

    steps = 4
    config = load_config("configs/photos.yaml", [
        f"train.steps={steps}", f"train.val_every={steps}", f"train.checkpoint_every={steps}", "train.log_every=1",
        "train.warmup_steps=0", "train.progress=false", "data.batch_size=8", "data.max_val_images=8"])
    summary = train(config, tmp_path / "run")
    recipe = RECIPES[RECOMMENDED].values
    assert summary.steps == steps
    from depthq import load

    model = load(tmp_path / "run")
    assert all(bool(q.initialized) for q in model.quantizers)  # k-means ran on the first batch
    assert model.config.mse_weight == recipe["model"]["mse_weight"] > 0
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv")) if r.get("train/lr")]
    logged = [float(r["train/lr"]) for r in rows]
    want = [recipe["train"]["lr"] * lr_factor(s, warmup_steps=0, total_steps=steps, schedule="cosine",
                                                min_ratio=recipe["train"]["min_lr_ratio"]) for s in range(steps)]
    assert logged == pytest.approx(want)


def test_the_shipped_photos_config_trains_with_the_recipe(tmp_path):
    """configs/photos.yaml, trained a few steps: the run records the recommended recipe, its
    codebooks were initialised by k-means on the first batch and the lr follows the cosine."""
    import csv

    import depthq
    from depthq.cli import main
    from depthq.presets import RECIPES, RECOMMENDED
    from depthq.runtime.schedule import lr_factor

    run = tmp_path / "run"
    steps = ["train.steps=4", "train.warmup_steps=1", "train.val_every=4", "train.log_every=1",
             "data.batch_size=4", "data.max_val_images=4", "train.progress=false"]
    args = ["train", "-c", str(CONFIGS[0].parent / "photos.yaml"), "--run-dir", str(run)]
    assert main(args + [a for s in steps for a in ("--set", s)]) == 0
    saved = load_config(run / "config.yaml")
    assert saved.recipe == RECOMMENDED and saved.model.kmeans_init and saved.train.lr_schedule == "cosine"
    model = depthq.load(run)
    quantizers = [m for m in model.modules() if isinstance(m, depthq.DepthwiseQuantizer)]
    assert quantizers and all(bool(q.initialized) for q in quantizers)
    lrs = [float(r["train/lr"]) for r in csv.DictReader(open(run / "metrics.csv")) if r.get("train/lr")]
    recipe = RECIPES[RECOMMENDED].values["train"]
    assert recipe["lr_schedule"] == "cosine" and len(lrs) == 4
    expected = [recipe["lr"] * lr_factor(s, warmup_steps=1, total_steps=4, schedule="cosine",
                                         min_ratio=recipe["min_lr_ratio"]) for s in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-6)  # the recipe's peak and cosine, not the file's
