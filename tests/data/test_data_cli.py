"""``depthq data info``: the printed facts match the data set; errors exit 2 with the message."""

from __future__ import annotations

import pytest

from depthq.cli import main
from depthq.data import get_dataset


def test_info_photos_prints_size_shape_splits_and_licences(capsys):
    assert main(["data", "info", "photos", "--val-fraction", "0.05"]) == 0
    out = capsys.readouterr().out
    counts = {s: len(get_dataset("photos", s, val_fraction=0.05)) for s in ("train", "val", "test")}
    for split, n in counts.items():
        assert f"{split}  " in out and f"{n:,}" in out
    assert "(3, 32, 32)" in out and "uint8" in out and "cache" in out
    assert "CC0 (photographer Stefan van der Walt)" in out and "retina" in out


def test_info_cifar10_from_a_root(cifar_root, capsys):
    assert main(["data", "info", "cifar10", "--root", str(cifar_root)]) == 0
    out = capsys.readouterr().out
    assert "20 " in out and "4 " in out and "not cached" in out and "CIFAR-10" in out


def test_info_errors_are_reported_not_raised(capsys):
    assert main(["data", "info", "cifar10"]) == 2
    assert "DEPTHQ_DATA" in capsys.readouterr().err
    assert main(["data", "info", "cifar10", "--image-size", "64", "--root", "."]) == 2
    assert "cifar10 images are 32x32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "info", "mnist"])  # argparse lists the valid names
