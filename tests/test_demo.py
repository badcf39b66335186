"""The main job end to end at a toy budget: both models, the table, the pictures, the reports."""

import json

from depthq.demo import run_demo


def test_demo_trains_both_models_and_writes_the_comparison(tmp_path, capsys):
    results = run_demo(tmp_path / "demo", steps=2, batch_size=8)
    assert set(results) == {"DQ-AE", "VQ-VAE"}
    out = tmp_path / "demo"
    for name in ("summary.md", "summary.json", "test_reconstructions.png", "mutual_information.png",
                 "dq-run/eval-test/report.md", "vq-run/eval-test/eval.json", "dq-run/model.safetensors"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    for row in ("distortion bits/dim (paper convention)", "total bits/dim, uniform prior",
                "total bits/dim, empirical prior", "PSNR (dB)", "training time (s)", "parameters"):
        assert row in printed, row
    saved = json.loads((out / "summary.json").read_text())["results"]
    dq, vq = saved["DQ-AE"], saved["VQ-VAE"]
    assert dq["parameters"] == vq["parameters"]  # only the quantizer differs
    # equal number of code vectors: 4 codebooks of 64 versus one of 256
    assert [lv["codebook_size"] * len(lv["entropy_nats"]) for lv in dq["levels"]] == [256, 256]
    assert [lv["codebook_size"] for lv in vq["levels"]] == [256, 256]
    again = run_demo(tmp_path / "demo", steps=1, batch_size=8)  # never overwrites: a new folder
    assert (tmp_path / "demo-2" / "summary.md").is_file() and again
