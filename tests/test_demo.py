"""The main job end to end at a toy budget: both models, the table, the pictures, the reports."""

import json

import pytest

from depthq.demo import run_demo
from depthq.evaluate.result import EvalResult


def test_demo_trains_both_models_and_writes_the_comparison(tmp_path, capsys):
    runs = run_demo(tmp_path / "demo", steps=2, batch_size=8)
    assert set(runs) == {"DQ-AE", "VQ-VAE"}
    out = tmp_path / "demo"
    for name in ("summary.md", "summary.json", "test_reconstructions.png", "mutual_information.png",
                 "dq-run/eval-test/report.md", "vq-run/eval-test/eval.json", "dq-run/model.safetensors"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    for row in ("distortion bits/dim (paper convention)", "total bits/dim, uniform prior",
                "total bits/dim, empirical prior", "PSNR (dB)", "training time (s)", "parameters",
                "information per position"):
        assert row in printed, row
    saved = json.loads((out / "summary.json").read_text())["runs"]
    dq, vq = (EvalResult.from_dict(saved[label]["eval"]) for label in ("DQ-AE", "VQ-VAE"))
    assert dq == runs["DQ-AE"].result
    assert dq.source.parameters == vq.source.parameters  # only the quantizer differs
    # equal number of code vectors: 4 codebooks of 64 versus one of 256
    assert [lv.code_vectors for lv in dq.levels] == [256, 256]
    assert [(lv.codebooks, lv.codebook_size) for lv in vq.levels] == [(1, 256), (1, 256)]
    again = run_demo(tmp_path / "demo", steps=1, batch_size=8)  # never overwrites: a new folder
    assert (tmp_path / "demo-2" / "summary.md").is_file() and again


def test_demo_refuses_a_bad_budget_before_creating_its_folder(tmp_path):
    with pytest.raises(ValueError, match="train.steps must be an int >= 1"):
        run_demo(tmp_path / "demo", steps=0)
    assert not (tmp_path / "demo").exists()
