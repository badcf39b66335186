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
