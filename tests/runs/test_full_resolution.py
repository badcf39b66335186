"""``depthq eval --full-resolution``: whole images, CompressAI's files, the anchors, BD."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from depthq.cli import main
from depthq.codec.images import read_image
from depthq.config import DataConfig, RunConfig
from depthq.evaluate.compressai_schema import CodecResults, ImageResult
from depthq.evaluate.quality import image_psnr, ssim
from depthq.io import Export, save_model, state_digest
from depthq.models import HierarchicalAutoencoder, preset
from depthq.prior import CodeLayout, PriorConfig, PriorModel, save_prior
from depthq.runs import SavedRun, codec_of
from depthq.runs.full_resolution import evaluate_full_resolution, frontier

TILE = 16
SIZES = [(37, 29), (17, 20), (40, 33)]  # none a multiple of the tile


def _run(root, seed: int):
    torch.manual_seed(seed)
    model = HierarchicalAutoencoder(preset("tiny")).eval()
    prior = PriorModel(CodeLayout.of(model.config, TILE), PriorConfig(dim=16, layers=1, heads=2)).eval()
    g = torch.Generator().manual_seed(seed)
    for p in prior.heads.parameters():  # away from uniform, by a run's own amount: rates differ
        p.data = (1 + 2 * seed) * torch.randn(p.shape, generator=g)
    run = root / f"run{seed}"
    save_model(model, run, export=Export(model=model.config, run=RunConfig(model=model.config, data=DataConfig())))
    save_prior(prior, run / "prior", image_size=TILE, image_channels=3, autoencoder_digest=state_digest(model))
    return run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    runs = [_run(root, seed) for seed in (0, 1)]
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        ramp = np.linspace(0, 200, w)[None, :, None]
        pixels = np.clip(ramp + g.integers(0, 56, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / ("sub" if i == 2 else "") / f"im{i}.png")
    return runs, folder


def test_whole_images_give_compressai_files_the_anchors_and_exact_lossless_round_trips(setup, tmp_path):
    runs, folder = setup
    out = tmp_path / "out"
    result = evaluate_full_resolution(runs, folder, out, progress=False)
    names = ["im0", "im1", "sub/im2"]
    assert [r.source for r in result.model.images[0]] == names
    # the aggregate is the mean of the per-image files, bpp over the true size (no resize, no crop)
    curve = CodecResults.read(out / "depthq.json")
    assert curve.points == 2 and list(curve.bpp) == sorted(curve.bpp)
    for point, per_image in enumerate(result.model.images):
        setting = result.model.settings[point]
        for r in per_image:
            written = ImageResult.from_dict(
                json.loads((out / "per-image" / f"depthq-{setting}-{r.source.replace('/', '_')}.json").read_text())
            )
            assert written == r
            assert r.ms_ssim_rgb is None  # sides of 160 or less: no MS-SSIM
            assert r.encoding_time is not None and r.encoding_time > 0
        assert curve.bpp[point] == pytest.approx(np.mean([r.bpp for r in per_image]))
        assert curve.psnr_rgb is not None
        assert curve.psnr_rgb[point] == pytest.approx(np.mean([r.psnr_rgb for r in per_image]))
    raw = json.loads((out / "depthq.json").read_text())
    assert set(raw) >= {"name", "description", "results"}
    assert {"psnr-rgb", "bpp", "encoding_time", "decoding_time"} <= set(raw["results"])
    assert all(isinstance(v, float) for values in raw["results"].values() for v in values)
    # SSIM as an extra series: the mean over the images of each decoded image's SSIM
    for point in range(len(result.model.images)):
        run = SavedRun.open(runs[0] if result.model.settings[point] == "run0" else runs[1])
        codec = codec_of(run).codec
        decoded = [codec.decompress(codec.compress([read_image(folder / f"{n}.png", 3)], lossy=True))[0]
                   for n in names]  # fmt: skip
        originals = [read_image(folder / f"{n}.png", 3) for n in names]
        expected = np.mean([ssim(x, y) for x, y in zip(originals, decoded)])
        assert raw["results"]["ssim-rgb"][point] == pytest.approx(expected)
    for anchor in ("jpeg", "webp"):
        assert CodecResults.read(out / f"{anchor}.json").points >= 4
    # two points: BD by pchip over the frontiers, or a note saying why not, for each anchor on
    # PSNR (random models need not improve with rate); no MS-SSIM on these small images
    for anchor in ("JPEG", "WebP"):
        done = [b for b in result.bd if b.anchor == anchor]
        why = [n for n in result.notes if n.startswith(f"no BD against {anchor} on psnr-rgb")]
        assert len(done) + len(why) == 1 and all((b.metric, b.method) == ("psnr-rgb", "pchip") for b in done)
    assert curve.bpp[0] < curve.bpp[1]
    assert any("pchip" in n for n in result.notes)
    assert sum("MS-SSIM" in n for n in result.notes) == 1  # said once, not once per codec
    assert [(a.anchor, a.run) for a in result.at_rate] == [
        (c, r) for c in ("JPEG", "WebP") for r in result.model.settings
    ]
    # lossless: exact, bits/dim = 8 * bytes / (C*H*W), next to PNG and WebP
    lossless = json.loads((out / "lossless.json").read_text())
    assert len(lossless["images"]) == 2 * len(SIZES) and all(row["exact"] for row in lossless["images"])
    assert all(set(row["bits_per_dim"]) == {"depthq", "PNG", "WebP"} for row in lossless["images"])
    assert result.figure.is_file() and (out / "summary.json").is_file()


def test_a_lossy_point_is_measured_against_the_decoded_file(setup, tmp_path):
    """PSNR of the per-image record is that of the .dqz file's decoded image with the original."""
    runs, folder = setup
    result = evaluate_full_resolution(runs[:1], folder, tmp_path / "o", lossless=False, max_images=1, progress=False)
    codec = codec_of(SavedRun.open(runs[0])).codec
    x = read_image(folder / "im0.png", 3)
    [blob] = codec.compress([x], lossy=True)
    [decoded] = codec.decompress([blob])
    [r] = result.model.images[0]
    assert r.bpp == pytest.approx(8 * len(blob) / (37 * 29))
    assert r.psnr_rgb == pytest.approx(image_psnr(x.numpy(), decoded.numpy()))
    assert result.bd == () and any("no BD-rate: 1 rate point" in n for n in result.notes)
    assert not (tmp_path / "o" / "lossless.json").exists()


def test_the_command_line(setup, tmp_path, capsys):
    runs, folder = setup
    out = tmp_path / "cli"
    assert main(["eval", str(runs[0]), "--full-resolution", str(folder), "--out", str(out),
                 "--max-images", "2", "--no-ms-ssim"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "JPEG at" in printed and "lossless (run0): bits/dim depthq" in printed
    assert (out / "depthq.json").is_file()
    # nothing is overwritten without --force
    assert main(["eval", str(runs[0]), "--full-resolution", str(folder), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    # several runs only with --full-resolution; its flags only with it
    assert main(["eval", str(runs[0]), str(runs[1])]) == 2
    assert "several only with --full-resolution" in capsys.readouterr().err
    assert main(["eval", str(runs[0]), "--no-lossless"]) == 2
    assert "belong to --full-resolution" in capsys.readouterr().err
    assert main(["eval", str(runs[0]), "--full-resolution", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_frontier_keeps_the_points_no_other_beats_at_a_lower_rate():
    curve = CodecResults("x", "", bpp=(0.5, 0.2, 1.0, 0.8, 0.8, 1.5), psnr_rgb=(30.0, 25.0, 29.0, 31.0, 30.5, 35.0))
    front = frontier(curve)
    assert front.bpp == (0.2, 0.5, 0.8, 1.5) and front.psnr_rgb == (25.0, 30.0, 31.0, 35.0)
    with pytest.raises(ValueError, match="no 'ms-ssim-db-rgb'"):
        frontier(curve, "ms-ssim-db-rgb")
