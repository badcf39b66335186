"""The registry of named configurations: every entry is described, recipes set the same keys."""

import pytest

from depthq import presets
from depthq.config import load_config
from depthq.models import ModelConfig, preset


def test_every_named_configuration_has_a_description():
    groups = [presets.MODELS, presets.RECIPES, *presets.EXPERIMENTS.values()]
    for group in groups:
        for name, entry in group.items():
            assert entry.description and "\n" not in entry.description, name


def test_every_recipe_sets_exactly_the_recipe_keys():
    keys = {f"{s}.{k}" for s, k in presets.RECIPE_KEYS}
    for name, recipe in presets.RECIPES.items():
        got = {f"{s}.{k}" for s, values in recipe.values.items() for k in values}
        assert got == keys, name
        config = load_config(None, [f"recipe={name}"])  # every recipe is a valid config
        assert config.recipe == name


def test_the_recommended_alias_and_model_presets():
    assert presets.recipe_name("recommended") == presets.RECOMMENDED
    with pytest.raises(ValueError, match="unknown recipe"):
        presets.recipe_name("quickest")
    assert preset("official") == ModelConfig()
    assert preset("tiny", num_codebooks=3).num_codebooks == 3
    for name in presets.MODELS:
        assert load_config(None, ["recipe=null", f"model.preset={name}"]).model == preset(name)


def test_experiment_presets_are_copies():
    a = presets.experiment_preset("decoupling", "quick")
    a["model"]["channels"] = -1
    assert presets.experiment_preset("decoupling", "quick")["model"]["channels"] == 64
    with pytest.raises(ValueError, match="unknown decoupling preset 'huge'; choose one of"):
        presets.experiment_preset("decoupling", "huge")


def test_the_registry_is_a_leaf():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(presets.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("depthq") for m in imported)
