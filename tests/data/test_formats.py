"""The standard formats: exact pixels at (channel, row, column), labels, order, and clear errors."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from depthq.data import formats, get_dataset
from depthq.data.registry import FASHION_SYSTEM_ROOT


# --- CIFAR-10 -----------------------------------------------------------------------------------
def test_cifar_pixels_land_at_channel_row_column(cifar_root, fmt):
    train = get_dataset("cifar10", "train", root=cifar_root)
    test = get_dataset("cifar10", "test", root=cifar_root)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.shape == (5 * fmt.cifar_per_batch, 3, 32, 32) and test.shape == (fmt.cifar_per_batch, 3, 32, 32)
    # Known points: byte 0 of a row is red (0, 0); byte 1024 is green (0, 0); byte 32 is red (1, 0).
    for n, c, row, col in [(0, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (5, 2, 31, 17), (19, 1, 3, 30)]:
        assert train.images[n, c, row, col].item() == fmt.pixel_value(n, c, row, col)
    np.testing.assert_array_equal(train.images.numpy(), fmt.expected(0, 20, 32))  # batches 1..5 in order
    np.testing.assert_array_equal(test.images.numpy(), fmt.expected(0, 4, 32, salt=1))
    assert train.labels.tolist() == [i % 10 for i in range(20)] and train.labels.dtype == torch.int64
    assert torch.equal(train[7], train.images[7])


def test_cifar_root_may_be_the_folder_itself_or_come_from_env(cifar_root, monkeypatch):
    direct = get_dataset("cifar10", "test", root=cifar_root / "cifar-10-batches-py")
    monkeypatch.setenv("DEPTHQ_DATA", str(cifar_root))
    from_env = get_dataset("cifar10", "test")
    assert torch.equal(direct.images, from_env.images)


def test_cifar_warns_when_counts_are_not_the_standard_ones(cifar_root, caplog):
    get_dataset("cifar10", "train", root=cifar_root)
    assert "standard split has 50000" in caplog.text


def test_cifar_errors_name_the_expected_layout(cifar_root, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="DEPTHQ_DATA.*cifar-10-batches-py"):
        get_dataset("cifar10")  # no root, no env
    with pytest.raises(FileNotFoundError, match="data_batch_1 .. data_batch_5"):
        get_dataset("cifar10", root=tmp_path / "nowhere")
    folder = cifar_root / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"\['data_batch_3'\] not found"):
        get_dataset("cifar10", root=cifar_root)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated CIFAR-10 batch"):
        get_dataset("cifar10", "test", root=cifar_root)


def test_cifar_wrong_shape_is_refused(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 32 * 32 * 3 - 3), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    with pytest.raises(ValueError, match=r"uint8 \(4, 3069\), expected uint8 \(N, 3072\)"):
        get_dataset("cifar10", "test", root=cifar_root)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))  # would run on a plain pickle.load


def test_cifar_reader_refuses_pickles_that_run_code(cifar_root, tmp_path):
    marker = tmp_path / "pwned"
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": _Payload(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to load \w+\.mkdir"):
        get_dataset("cifar10", "test", root=cifar_root)
    assert not marker.exists()


# --- downsampled ImageNet -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_pixels_labels_and_batch_order(imagenet_root, fmt, size):
    train = get_dataset(f"imagenet{size}", "train", root=imagenet_root)
    test = get_dataset(f"imagenet{size}", "test", root=imagenet_root)
    assert train.shape == (30, 3, size, size) and test.shape == (5, 3, size, size)
    for n, c, row, col in [(0, 0, 0, 0), (0, 1, 0, 0), (0, 2, 0, 1), (29, 2, size - 1, size - 1), (13, 1, 5, 9)]:
        assert train.images[n, c, row, col].item() == fmt.pixel_value(n, c, row, col)
    # batches 1, 2, ..., 10 in numeric order (a lexicographic sort would put 10 after 1)
    np.testing.assert_array_equal(train.images.numpy(), fmt.expected(0, 30, size))
    np.testing.assert_array_equal(test.images.numpy(), fmt.expected(0, 5, size, salt=2))
    assert train.labels.tolist() == list(range(30))  # the files' 1..1000 minus one
    assert "Chrabaszcz et al. 2017" in train.describe() and "val_data" in test.describe()
    assert train.mmap_path is not None and train.mmap_path.suffix == ".npy"


def test_imagenet_cache_is_reused_and_pickles_as_a_path(imagenet_root, monkeypatch):
    first = get_dataset("imagenet32", "train", root=imagenet_root)
    stamp = first.mmap_path.stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(formats, "_build_imagenet", no_rebuild)
    again = get_dataset("imagenet32", "train", root=imagenet_root)
    assert torch.equal(first.images, again.images) and again.mmap_path.stat().st_mtime_ns == stamp
    state = again.__getstate__()
    assert state["_storage"] is None  # a worker re-opens the memory map instead of receiving pixels
    clone = pickle.loads(pickle.dumps(again))
    assert torch.equal(clone.images, again.images)


def test_imagenet_with_val_holdout_is_a_view_not_a_copy(imagenet_root):
    train = get_dataset("imagenet64", "train", root=imagenet_root, val_fraction=0.2, seed=3)
    val = get_dataset("imagenet64", "val", root=imagenet_root, val_fraction=0.2, seed=3)
    assert len(val) == 6 and len(train) == 24
    full = get_dataset("imagenet64", "train", root=imagenet_root).images
    rows = torch.tensor([0, 5, 23])
    assert torch.equal(train.batch(rows), train.images[rows])
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())  # labels are unique here
    assert torch.equal(full[val.labels], val.images)


def test_imagenet_errors(imagenet_root, tmp_path, fmt):
    with pytest.raises(FileNotFoundError, match="does not exist.*train_data_batch_1 .. train_data_batch_10"):
        get_dataset("imagenet32", root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="DEPTHQ_DATA.*imagenet64"):
        get_dataset("imagenet64", "test")
    wrong = tmp_path / "wrong"
    shutil.copytree(imagenet_root / "imagenet64", wrong)
    with pytest.raises(ValueError, match=r"expected \(N, 3072\) = 3x32x32 planar \(that is 3x64x64: wrong folder\?\)"):
        get_dataset("imagenet32", root=wrong)
    (imagenet_root / "imagenet32" / "train_data_batch_4.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"numbered \[1, 2, 3, 5, 6, 7, 8, 9, 10\]"):
        get_dataset("imagenet32", root=imagenet_root)
    val = imagenet_root / "imagenet32" / "val_data.npz"
    val.write_bytes(val.read_bytes()[:-100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        get_dataset("imagenet32", "test", root=imagenet_root)
    with pytest.raises(ValueError, match="images are 64x64; got image_size=32"):
        get_dataset("imagenet64", root=imagenet_root, image_size=32)


def test_imagenet_labels_outside_1_to_1000_are_refused(tmp_path):
    folder = tmp_path / "imagenet32"
    folder.mkdir()
    with open(folder / "val_data.npz", "wb") as f:
        np.savez(f, data=np.zeros((2, 3072), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="labels in 1..1000"):
        get_dataset("imagenet32", "test", root=tmp_path)


# --- Fashion-MNIST -------------------------------------------------------------------------------
def test_fashion_mnist_idx_pixels(fashion_root, fmt):
    train = get_dataset("fashion-mnist", "train", root=fashion_root)
    test = get_dataset("fashion-mnist", "test", root=fashion_root.parent)  # a parent works too
    assert train.shape == (6, 1, 28, 28) and test.shape == (2, 1, 28, 28)
    assert train.images[4, 0, 27, 3].item() == fmt.pixel_value(4, 0, 27, 3)
    np.testing.assert_array_equal(test.images.numpy(), fmt.expected(0, 2, 28, 1, salt=3))
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert train.num_channels == 1 and train.image_size == 28


def test_fashion_mnist_errors(fashion_root, tmp_path, fmt):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion-mnist", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="images are 28x28; got image_size=32"):
        get_dataset("fashion-mnist", root=fashion_root, image_size=32)
    images = fashion_root / "train-images-idx3-ubyte.gz"
    fmt.write_idx(images, 2049, np.zeros((6, 28, 28), np.uint8))  # a labels magic on the images file
    with pytest.raises(ValueError, match="idx magic number 2049, expected 2051"):
        get_dataset("fashion-mnist", root=fashion_root)
    raw = gzip.compress(gzip.decompress((fashion_root / "t10k-images-idx3-ubyte.gz").read_bytes())[:-28])
    (fashion_root / "t10k-images-idx3-ubyte.gz").write_bytes(raw)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        get_dataset("fashion-mnist", "test", root=fashion_root)
    labels = fashion_root / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:10])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        formats._read_idx(fashion_root, "t10k-labels-idx1-ubyte", 2049, 1)


@pytest.mark.skipif(not (FASHION_SYSTEM_ROOT / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    train, test = get_dataset("fashion-mnist", "train"), get_dataset("fashion-mnist", "test")
    assert train.shape == (60_000, 1, 28, 28) and test.shape == (10_000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10  # the standard balanced split
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.max().item() == 255 and train.images.min().item() == 0
