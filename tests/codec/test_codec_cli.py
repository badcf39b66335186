"""``depthq compress`` / ``depthq decompress`` on files and on a data split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from depthq.cli import main
from depthq.codec.images import read_image
from depthq.config import DataConfig, RunConfig
from depthq.io import Export, save_model
from depthq.io import state_digest
from depthq.prior import save_prior

from test_codec import TILE, images, make_models  # noqa: E402  (same folder)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding a (random) tiny model and a prior for its 16x16 tiles."""
    run = tmp_path_factory.mktemp("codec") / "run"
    model, prior = make_models(seed=20)
    config = RunConfig(model=model.config, data=DataConfig(name="photos", val_fraction=0.05))
    save_model(model, run, export=Export(model=model.config, run=config))
    save_prior(prior, run / "prior", image_size=TILE, image_channels=3, autoencoder_digest=state_digest(model))
    return run


def write_png(path, x: torch.Tensor) -> None:
    Image.fromarray(x.permute(1, 2, 0).numpy()).save(path)


def test_compress_and_decompress_files_round_trip(run_dir, tmp_path, capsys):
    x = images(2, 32, seed=21)
    for i in range(2):
        write_png(tmp_path / f"im{i}.png", x[i])
    assert main(["compress", str(run_dir), str(tmp_path / "im0.png"), str(tmp_path / "im1.png")]) == 0
    assert "bits/dim" in capsys.readouterr().out
    out = tmp_path / "decoded"
    assert main(["decompress", str(run_dir), str(tmp_path / "im0.dqz"), str(tmp_path / "im1.dqz"),
                 "--out", str(out)]) == 0
    for i in range(2):
        assert torch.equal(read_image(out / f"im{i}.png", 3), x[i])
    # nothing is overwritten without --force
    assert main(["compress", str(run_dir), str(tmp_path / "im0.png")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["compress", str(run_dir), str(tmp_path / "im0.png"), "--force", "--lossy"]) == 0


def test_bad_inputs_give_one_line_errors(run_dir, tmp_path, capsys):
    (tmp_path / "junk.dqz").write_bytes(b"hello, not a file of ours")
    assert main(["decompress", str(run_dir), str(tmp_path / "junk.dqz")]) == 2
    err = capsys.readouterr().err
    assert "junk.dqz: not a depthq compressed file" in err and len(err.strip().splitlines()) == 1
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    assert main(["compress", str(run_dir), str(tmp_path / "alpha.png")]) == 2
    assert "transparency" in capsys.readouterr().err
    assert main(["compress", str(run_dir)]) == 2
    assert "give image files or --split" in capsys.readouterr().err


def test_compress_a_split_writes_files_and_a_verified_summary(run_dir, tmp_path, capsys):
    out = tmp_path / "split"
    assert main(["compress", str(run_dir), "--split", "test", "--max-images", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3/3 round trips bit-exact" in printed and "WebP lossless" in printed and "JPEG at the nearest rate" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["codec"]["round_trips_verified"] == 3
    files = sorted((out / "lossless").glob("*.dqz"))
    assert len(files) == 3 and len(list((out / "lossy").glob("*.dqz"))) == 3
    mean_bytes = np.mean([f.stat().st_size for f in files])
    assert summary["codec"]["lossless_bytes"] == pytest.approx(mean_bytes)
    assert main(["decompress", str(run_dir), str(files[0]), "--out", str(tmp_path)]) == 0
