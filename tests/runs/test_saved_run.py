"""A run folder is opened once: `depthq eval`, `prior train` and `compress` read each of its files
at most once, and hash the weights once."""

from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

import depthq.codec.coder
import depthq.io
import depthq.models
import depthq.prior.io
import depthq.runs.saved
from depthq.cli import main
from depthq.config import load_config
from depthq.prior.config import load_prior_config
from depthq.runs import SavedRun, train_prior
from depthq.train import train

TINY_PRIOR = ["prior.dim=16", "prior.layers=1", "prior.heads=2", "train.steps=2", "train.max_train_images=32",
              "train.max_val_images=16", "train.batch_size=8", "train.eval_batch_size=32", "train.val_every=2",
              "train.progress=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny autoencoder run with its learned prior."""
    run = tmp_path_factory.mktemp("saved") / "run"
    overrides = ["recipe=null", "model.preset=tiny", "data.batch_size=8", "data.max_val_images=8", "train.steps=2",
                 "train.val_every=2", "train.progress=false"]
    train(load_config(None, overrides), run)
    train_prior(run, load_prior_config(None, TINY_PRIOR))
    return run


class Reads:
    """Counts the files under a folder that are opened for reading, and the weight digests."""

    def __init__(self, monkeypatch, folder: Path) -> None:
        self.folder, self.counts, self.digests = folder.resolve(), Counter(), 0
        real_open = builtins.open  # Path.read_text / read_bytes open through io.open too
        real_digest = depthq.io.state_digest

        def note(path, mode="r") -> None:
            try:
                resolved = Path(path).resolve()
            except TypeError:  # a file descriptor
                return
            if "r" in mode and "+" not in mode and resolved.is_relative_to(self.folder):
                self.counts[str(resolved.relative_to(self.folder))] += 1

        def opened(file, mode="r", *args, **kwargs):
            note(file, mode)
            return real_open(file, mode, *args, **kwargs)

        def digest(module):
            if isinstance(module, depthq.models.HierarchicalAutoencoder):
                self.digests += 1
            return real_digest(module)

        monkeypatch.setattr(builtins, "open", opened)
        monkeypatch.setattr(io, "open", opened)
        for module in (depthq.io, depthq.runs.saved, depthq.codec.coder, depthq.prior.io):
            monkeypatch.setattr(module, "state_digest", digest)

    def assert_once(self, *expected: str) -> None:
        twice = {name: n for name, n in self.counts.items() if n > 1}
        assert not twice, f"read more than once: {twice}"
        for name in expected:
            assert self.counts[name] == 1, (name, dict(self.counts))
        assert self.digests == 1, f"the weights were hashed {self.digests} times"


RECORDS = ("config.json", "model.json", "model.safetensors")


def test_eval_opens_the_run_once(run_dir, tmp_path, monkeypatch):
    reads = Reads(monkeypatch, run_dir)
    args = ["eval", str(run_dir), "--out", str(tmp_path / "eval"), "--no-anchors", "--prior-images", "16",
            "--device", "cpu", "--codec", "--codec-images", "1"]
    assert main(args) == 0
    reads.assert_once(*RECORDS, "prior/prior.json", "prior/prior.safetensors")


def test_prior_training_opens_the_run_once(run_dir, tmp_path, monkeypatch):
    reads = Reads(monkeypatch, run_dir)
    args = ["prior", "train", str(run_dir), "--out", str(tmp_path / "prior")]
    for override in TINY_PRIOR:
        args += ["--set", override]
    assert main(args) == 0
    reads.assert_once(*RECORDS)


def test_compress_opens_the_run_once(run_dir, tmp_path, monkeypatch):
    image = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy()
    Image.fromarray(image).save(tmp_path / "x.png")
    reads = Reads(monkeypatch, run_dir)
    assert main(["compress", str(run_dir), str(tmp_path / "x.png"), "--out", str(tmp_path)]) == 0
    reads.assert_once(*RECORDS, "prior/prior.json", "prior/prior.safetensors")


def test_a_saved_run_builds_its_data_module_once(run_dir):
    run = SavedRun.open(run_dir)
    assert run.datamodule() is run.datamodule()
    assert run.run_data.image_size == 32 and run.config().data.name == "photos"
    assert run.datamodule("photos", None) is not run.datamodule()  # another data set: its own
