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
