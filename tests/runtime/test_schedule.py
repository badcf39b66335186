import math

import pytest

from depthq.config import config_from_dict
from depthq.errors import ConfigError
from depthq.runtime.schedule import lr_factor


def test_constant_schedule_is_warmup_then_one():
    assert [lr_factor(s, warmup_steps=4, total_steps=10) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_schedule_by_hand():
    f = [lr_factor(s, warmup_steps=2, total_steps=12, schedule="cosine", min_ratio=0.1) for s in range(12)]
    assert f[:2] == [0.5, 1.0]                     # warm-up
    assert f[2] == pytest.approx(1.0)              # the decay starts at the full rate
    assert f[11] == pytest.approx(0.1)             # ... and ends at min_ratio on the last step
    assert f[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert all(a >= b for a, b in zip(f[2:], f[3:]))  # monotone after the warm-up
    # exact halfway point of a span of 10
    g = lr_factor(5, warmup_steps=0, total_steps=11, schedule="cosine", min_ratio=0.0)
    assert g == pytest.approx(0.5)


def test_schedule_is_checked_in_the_config():
    with pytest.raises(ConfigError, match="lr_schedule"):
        config_from_dict({"train": {"lr_schedule": "linear"}})
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        config_from_dict({"train": {"lr_schedule": "cosine", "min_lr_ratio": 1.5}})
    assert config_from_dict({"train": {"lr_schedule": "cosine"}}).train.lr_schedule == "cosine"



def test_a_cosine_run_cannot_be_extended_on_resume():
    from depthq.train.run import check_resume

    saved = config_from_dict({"train": {"steps": 800, "lr_schedule": "cosine"}})
    longer = config_from_dict({"train": {"steps": 1600, "lr_schedule": "cosine"}})
    check_resume(saved, saved, 400)  # the same steps: fine
    with pytest.raises(ConfigError, match="cannot extend a run with the cosine"):
        check_resume(saved, longer, 400)
    constant = config_from_dict({"train": {"steps": 800, "lr_schedule": "constant"}})
    check_resume(constant, config_from_dict({"train": {"steps": 1600, "lr_schedule": "constant"}}), 400)  # extendable
