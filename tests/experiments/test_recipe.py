"""The recipe experiment at toy size: configs per variant, table, JPEG column, errors."""

from __future__ import annotations

import json
import math

import pytest

from depthq.errors import UsageError
from depthq.experiments import recipe
from depthq.presets import experiment_preset


def test_variants_change_only_what_they_name():
    base = recipe.recipe_config("v0.1", "dq", steps=100, batch_size=8, seed=0, data="photos")
    both = recipe.recipe_config("all", "dq", steps=100, batch_size=8, seed=0, data="photos")
    assert (base.model.beta, base.model.kmeans_init, base.train.lr_schedule) == (0.25, False, "constant")
    assert (both.model.beta, both.model.kmeans_init, both.train.lr_schedule, both.train.lr) == (1.0, True, "cosine", 2e-3)
    assert both.model.channels == base.model.channels and both.data == base.data
    vq = recipe.recipe_config("v0.1", "vq", steps=100, batch_size=8, seed=0, data="photos")
    # VQ-VAE: one codebook of M*K codes, the same number of code vectors as DQ-AE's M codebooks of K
    assert vq.model.codebook_sizes == [k * base.model.num_codebooks for k in base.model.codebook_sizes]
    assert vq.model.codebooks_per_level * vq.model.codebook_sizes[0] == \
        base.model.codebooks_per_level * base.model.codebook_sizes[0]
    with pytest.raises(UsageError, match="recipe variant"):
        recipe.recipe_config("fast", "dq", steps=1, batch_size=1, seed=0, data="photos")


def test_recipe_toy_run_writes_rows_with_the_jpeg_anchor(tmp_path):
    out = recipe.run(tmp_path / "r", preset_name="toy", data="photos", variants=["v0.1", "all"])
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [(r["variant"], r["model"]) for r in data["rows"]] == [
        ("v0.1", "DQ-AE"), ("v0.1", "VQ-VAE"), ("all", "DQ-AE"), ("all", "VQ-VAE")]
    assert len(data["cells"]) == 4
    for row in out.rows:
        assert 0 < row.min_perplexity_fraction.mean <= 1
        assert 0 <= row.min_information_fraction.mean <= 1
        assert row.jpeg_psnr is not None  # a value inside JPEG's sweep, NaN ("n/a") outside it
        assert math.isfinite(row.jpeg_psnr.mean) or row.jpeg_psnr.format() == "n/a"
        # bits per pixel of the codes: at most the uniform prior's capacity (plus a little for the empirical fit)
        assert 0 < row.rate_bpp.mean
    assert "JPEG PSNR at the same rate" in out.table
    lines = (tmp_path / "r" / "results.md").read_text().splitlines()
    assert any("v0.1" in line and "VQ-VAE" in line and line.startswith("|") for line in lines)


def test_experiments_train_with_the_recipe_at_their_own_learning_rate():
    from depthq.experiments.common import single_level_config
    from depthq.presets import RECIPES, RECOMMENDED, experiment_preset

    preset = experiment_preset("decoupling", "quick")
    config = single_level_config(preset, quantizer="dq", codebook_size=8, num_codebooks=4, code_dim=16, seed=0,
                                 data="photos", root=None)
    assert config.recipe == RECOMMENDED
    model, train = RECIPES[RECOMMENDED].values["model"], RECIPES[RECOMMENDED].values["train"]
    for key, value in model.items():
        assert getattr(config.model, key) == value
    for key, value in train.items():
        if key != "lr":
            assert getattr(config.train, key) == value
    assert config.train.lr == preset["lr"]


def test_decoupling_gpu_preset_is_refused_with_quick(capsys):
    from depthq.cli import main

    assert main(["experiment", "decoupling", "--quick", "--gpu"]) != 0
    assert "--quick and --gpu" in capsys.readouterr().err


def test_anchor_outside_the_sweep_is_not_a_number():
    from depthq.evaluate.anchors import Interpolated

    assert recipe._not_extrapolated(Interpolated(30.0, False)) == 30.0
    assert math.isnan(recipe._not_extrapolated(Interpolated(22.0, True)))


def test_bad_seeds_steps_and_data_are_refused_before_the_folder(tmp_path):
    from depthq.errors import ConfigError

    with pytest.raises(UsageError, match="--steps must be >= 1"):
        recipe.run(tmp_path / "r", preset_name="toy", data="photos", steps=0)
    with pytest.raises(ConfigError):  # 28x28 greyscale does not fit the demo network
        recipe.run(tmp_path / "r", preset_name="toy", data="fashion-mnist")
    assert not (tmp_path / "r").exists()
    assert recipe.cells(recipe.with_options(experiment_preset("recipe", "toy"), seeds=[1, 1]), "photos", None, ["v0.1"])[0].name \
        == "dq-v01-seed1"


def test_single_level_experiments_take_the_images_shape_from_the_data_set():
    from depthq.experiments.decoupling import cells

    config = cells(experiment_preset("decoupling", "quick"), "fashion-mnist", None)[0].config
    assert (config.model.image_channels, config.model.image_size) == (1, 28)
    config.datamodule()  # fits: no ConfigError (the images are not read)
    with pytest.raises(UsageError, match="unknown data set"):
        cells(experiment_preset("decoupling", "quick"), "nonsense", None)
