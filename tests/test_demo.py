"""The main job end to end at a toy budget: both models over seeds, the table, the verdict, the reports."""

import json

import pytest

from depthq.demo import run_demo, verdict
from depthq.experiments.common import aggregate
from depthq.evaluate.result import EvalResult


def test_demo_trains_both_models_over_seeds_and_writes_the_comparison(tmp_path, capsys):
    runs = run_demo(tmp_path / "demo", steps=2, batch_size=8, seeds=[0, 1], data="photos", prior=False)
    assert set(runs) == {"DQ-AE", "VQ-VAE"} and [r.seed for r in runs["DQ-AE"]] == [0, 1]
    out = tmp_path / "demo"
    for name in ("summary.md", "summary.json", "test_reconstructions.png", "mutual_information.png",
                 "dq-seed0/eval-test/report.md", "vq-seed1/eval-test/eval.json", "dq-seed1/model.safetensors"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    for row in ("distortion bits/dim (paper convention)", "total bits/dim, uniform prior",
                "total bits/dim, empirical prior", "test PSNR (dB)", "training time (s)",
                "JPEG PSNR (dB) at the model's code rate", "PNG bits/dim (one file per image)",
                "smallest codebook perplexity / K", "information per position / capacity, level 1",
                "mean ± std over 2 seeds", "Verdict:", "data: photos"):
        assert row in printed, row
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["recipe"] == "all+mse"
    dq = [EvalResult.from_dict(r["eval"]) for r in saved["runs"]["DQ-AE"]]
    vq = [EvalResult.from_dict(r["eval"]) for r in saved["runs"]["VQ-VAE"]]
    assert dq[1] == runs["DQ-AE"][1].result
    assert dq[0].source.parameters == vq[0].source.parameters  # only the quantizer differs
    assert dq[0].anchors is not None  # PNG/WebP/JPEG on the same images
    # equal number of code vectors: 4 codebooks of 64 versus one of 256
    assert [lv.code_vectors for lv in dq[0].levels] == [256, 256]
    assert [(lv.codebooks, lv.codebook_size) for lv in vq[0].levels] == [(1, 256), (1, 256)]
    # the seeds differ: different initialisation and data order
    assert dq[0].distortion != dq[1].distortion


def test_demo_with_the_learned_prior_adds_its_row(tmp_path, capsys):
    runs = run_demo(tmp_path / "demo", steps=2, batch_size=8, seeds=[3], data="photos")
    assert all(rs[0].result.total("learned") is not None for rs in runs.values())
    printed = capsys.readouterr().out
    assert "total bits/dim, learned prior (seed 3)" in printed and "one seed: no spread measured" in printed
    assert ".dqz lossless files, bits/dim" in printed and "; 4/4" in printed  # real files, every round trip exact
    codec = runs["DQ-AE"][0].result.codec
    assert codec.measurement.lossless_bits_per_dim >= codec.measurement.model_bits_per_dim
    assert (tmp_path / "demo" / "dq-seed3" / "prior" / "prior.safetensors").is_file()
    run_demo(tmp_path / "demo", steps=1, batch_size=8, seeds=[0], data="photos", prior=False)
    assert (tmp_path / "demo-2" / "summary.md").is_file()  # never overwrites: a new folder


def test_verdict_reads_overlapping_seeds_as_no_verdict():
    def figures(dq, vq):
        return {label: {"DQ-AE": aggregate(dq), "VQ-VAE": aggregate(vq)} for label in (
            "test PSNR (dB) of the mean reconstruction", "distortion bits/dim (paper convention)",
            "total bits/dim, empirical prior")}

    lines = verdict(figures((20.0, 21.0), (20.5, 22.0)))
    assert all("within the spread over seeds" in line for line in lines)
    lines = verdict(figures((24.0, 25.0), (20.0, 21.0)))
    assert "PSNR (dB) of the mean reconstruction: DQ-AE is better by 4.000" in lines[0]
    assert "2 + 2 seeds: suggestive only, 33% by chance" in lines[0]
    three = verdict(figures((24.0, 25.0, 24.5), (20.0, 21.0, 20.5)))
    assert "3 + 3 seeds: suggestive only, 10% by chance" in three[0]
    assert "distortion bits/dim (paper convention): VQ-VAE is better" in lines[1]  # lower is better
    assert aggregate((1.0, 3.0)).format(2) == "2.00 ± 1.41"


def test_demo_refuses_a_bad_budget_or_data_before_creating_its_folder(tmp_path):
    from depthq.errors import ConfigError

    with pytest.raises(ValueError, match="train.steps must be an int >= 1"):
        run_demo(tmp_path / "demo", steps=0, data="photos")
    with pytest.raises(ConfigError):  # 28x28 greyscale does not fit the demo network
        run_demo(tmp_path / "demo", steps=1, data="fashion-mnist")
    assert not (tmp_path / "demo").exists()
