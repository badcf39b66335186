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
