"""Training a prior on a tiny run: files, figures, loading, resume, the command line."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch

import depthq
from depthq.cli import main
from depthq.config import load_config
from depthq.cli.prior import format_summary
from depthq.io import state_digest
from depthq.prior import load_prior, load_prior_config
from depthq.runs import SavedRun, train_prior
from depthq.train import train

TINY_PRIOR = ["prior.dim=16", "prior.layers=1", "prior.heads=2", "train.max_train_images=96",
              "train.max_val_images=24", "train.batch_size=8", "train.eval_batch_size=32",
              "train.val_every=3", "train.checkpoint_every=2", "train.log_every=1", "train.progress=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny autoencoder run (4 steps) on the built-in photos."""
    run = tmp_path_factory.mktemp("ae") / "run"
    overrides = ["model.preset=tiny", "data.batch_size=8", "data.max_val_images=8", "train.steps=2",
                 "train.val_every=2", "train.progress=false"]
    train(load_config(None, overrides), run)
    return run


def test_a_tiny_prior_writes_its_files_and_reports_labelled_rates(run_dir, tmp_path):
    out = tmp_path / "prior"
    summary = train_prior(run_dir, load_prior_config(None, [*TINY_PRIOR, "train.steps=4"]), out=out)
    for name in ("config.yaml", "metrics.csv", "prior.safetensors", "prior.json", "summary.json",
                 "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    assert summary["steps"] == 4 and summary["val_images"] == 24 and summary["train_images"] == 96
    val = summary["validation"]
    assert val["step"] == 4 and val["bits_per_dim"] == pytest.approx(val["bits_per_image"] / 3072)
    assert summary["uniform_bits_per_image"] == 256 * 2 * 4 + 64 * 2 * 4  # tiny at 32: 16x16, 8x8, M=2, K=16
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 4 and "depthq_rng" in state
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/bits_per_image" in header

    model = depthq.load(run_dir)
    prior, info = load_prior(out, model=model)
    assert info.autoencoder_digest == state_digest(model) and info.image_size == 32 and info.dims == 3072
    assert info.metadata["validation"] == val
    # the reported figure is the prior's rate on the val codes, recomputed here from scratch
    data = SavedRun.open(run_dir).run_data
    from depthq.prior.data import subset_rows

    val_images = data.images("val")
    x = val_images.batch(subset_rows(len(val_images), 24, data.seed))
    codes = model.encode(x)
    assert prior.rate_bits(codes).mean().item() == pytest.approx(val["bits_per_image"], rel=1e-4)
    empirical = info.empirical_prior().rate_bits(codes).mean().item()
    assert empirical == pytest.approx(summary["empirical_bits_per_image"])
    text = format_summary(summary)
    assert "learned prior" in text and "empirical prior" in text and "bits/dim" in text


def test_a_prior_is_refused_for_other_weights_and_damaged_files(run_dir, tmp_path):
    out = tmp_path / "prior"
    train_prior(run_dir, load_prior_config(None, [*TINY_PRIOR, "train.steps=1"]), out=out)
    other = depthq.models.HierarchicalAutoencoder(depthq.load(run_dir).config)
    with pytest.raises(ValueError, match="trained on other autoencoder weights"):
        load_prior(out, model=other)
    weights = out / "prior.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the digest"):
        load_prior(out)
    weights.write_bytes(bytes(data[:100]))
    with pytest.raises(ValueError, match="cannot load the prior's weights"):
        load_prior(out)
    with pytest.raises(FileNotFoundError, match="depthq prior train"):
        load_prior(tmp_path / "nothing")


def test_resume_continues_the_steps_and_the_history(run_dir, tmp_path):
    out = tmp_path / "prior"
    config = load_prior_config(None, [*TINY_PRIOR, "train.steps=4"])
    train_prior(run_dir, config, out=out)
    with pytest.raises(FileExistsError, match="--resume"):
        train_prior(run_dir, config, out=out)
    longer = load_prior_config(out / "config.yaml", ["train.steps=6"])
    summary = train_prior(run_dir, longer, out=out, resume=True)
    assert summary["steps"] == 6 and summary["validation"]["step"] == 6
    steps = [int(float(r["step"])) for r in csv.DictReader(open(out / "metrics.csv")) if r.get("train/loss")]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 5  # kept, no duplicates
    rows = (out / "metrics.csv").read_text()
    again = train_prior(run_dir, longer, out=out, resume=True)  # nothing left to train
    assert again["validation"] == summary["validation"] and (out / "metrics.csv").read_text() == rows
    assert again["train_seconds"] >= summary["train_seconds"]  # both sessions counted
    with pytest.raises(ValueError, match="cannot change the prior's architecture"):
        train_prior(run_dir, load_prior_config(out / "config.yaml", ["prior.dim=8", "train.steps=8"]),
                    out=out, resume=True)


class StopAt(L.Callback):
    """Interrupts training after ``step`` steps (as a killed job would, after its checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_an_interrupted_and_resumed_prior_ends_where_an_uninterrupted_one_does(run_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    config = load_prior_config(None, [*TINY_PRIOR, "train.steps=5", "prior.dropout=0.1"])
    train_prior(run_dir, config, out=straight)
    train_prior(run_dir, config, out=split, callbacks=[StopAt(2)])
    train_prior(run_dir, load_prior_config(split / "config.yaml"), out=split, resume=True)
    a, _ = load_prior(straight)
    b, _ = load_prior(split)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_cli_trains_samples_and_refuses_changes_on_resume(run_dir, tmp_path, capsys):
    out = tmp_path / "cli-prior"
    args = ["prior", "train", str(run_dir), "--out", str(out), "--steps", "2"]
    args += [a for o in TINY_PRIOR for a in ("--set", o)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "learned / empirical" in printed and "bits per image" in printed
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert main(["prior", "train", str(run_dir), "--out", str(out), "--resume", "--set", "prior.dim=8"]) == 2
    assert "only --steps may change" in capsys.readouterr().err
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "--prior", str(out), "--n", "6", "--out", str(grid)]) == 0
    assert "samples/s" in capsys.readouterr().out
    from PIL import Image

    assert Image.open(grid).size == (2 * (2 + 3 * 34), 2 * (2 + 2 * 34))  # 3 columns, 2 rows, scale 2


DDP_SCRIPT = '''
import os, sys
import lightning as L
import torch
from depthq.prior import load_prior_config
from depthq.runs import train_prior

class SaveWeights(L.Callback):
    def on_train_end(self, trainer, module):
        torch.save({{k: v.detach().clone() for k, v in module.prior.state_dict().items()}},
                   os.path.join(sys.argv[2], f"rank{{trainer.global_rank}}.pt"))

config = load_prior_config(None, {overrides!r})
train_prior(sys.argv[1], config, out=sys.argv[2], callbacks=[SaveWeights()])
'''


def test_two_process_cpu_ddp_trains_one_prior(run_dir, tmp_path):
    import os
    import subprocess
    import sys

    overrides = [*TINY_PRIOR, "train.steps=3", "train.devices=2", "train.accelerator=cpu", "train.strategy=ddp",
                 "prior.dropout=0.1"]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(overrides=overrides))
    out = tmp_path / "prior"
    result = subprocess.run([sys.executable, str(script), str(run_dir), str(out)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # one model: every rank took every step
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["validation"]["step"] == 3
    prior, _ = load_prior(out)
    for k, v in prior.state_dict().items():
        assert torch.equal(v, ranks[0][k]), k


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "pickle", "no checksum, truncated"])
def test_resume_refuses_a_damaged_checkpoint_with_one_line(run_dir, tmp_path, capsys, damage):
    """`depthq prior train --resume` on a damaged checkpoint: exit status 2 and one line, as for
    the autoencoder's checkpoints (the shared runtime verifies both)."""
    import pickle

    from depthq.runtime.checkpoints import sidecar

    out = tmp_path / "prior"
    train_prior(run_dir, load_prior_config(None, [*TINY_PRIOR, "train.steps=2"]), out=out)
    ckpt = out / "checkpoints" / "last.ckpt"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncated":
        ckpt.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "bit flip":
        data[len(data) // 2] ^= 0x01
        ckpt.write_bytes(bytes(data))
    elif damage == "pickle":  # an object weights_only refuses to build
        ckpt.write_bytes(pickle.dumps({"global_step": 2, "payload": StopAt}))
    else:  # an older depthq wrote no checksum file: the file itself must still fail cleanly
        sidecar(ckpt).unlink()
        ckpt.write_bytes(bytes(data[:100]))
    capsys.readouterr()
    code = main(["prior", "train", str(run_dir), "--out", str(out), "--resume", "--steps", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("depthq: error:") and "last.ckpt" in err[0], err
