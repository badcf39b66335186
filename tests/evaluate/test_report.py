"""depthq eval / compare: the files exist and eval.json has the documented keys."""

from __future__ import annotations

import json

import pytest

from depthq.cli import main
from depthq.config import load_config
from depthq.evaluate.report import compare_runs, write_eval
from depthq.train import train

TINY = ["model.preset=tiny", "data.batch_size=8", "data.max_val_images=16", "train.steps=3",
        "train.val_every=3", "train.progress=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for quantizer in ("dq", "vq"):
        train(load_config(None, [*TINY, f"model.quantizer={quantizer}"]), root / quantizer)
    return root


def test_eval_writes_report_json_and_figures(runs):
    result = write_eval(runs / "dq", prior_images=64, batch_size=64, progress=False)
    out = runs / "dq" / "eval-test"
    data = json.loads((out / "eval.json").read_text())
    for key in ("images", "dims", "data", "split", "bits_per_dim", "labels", "prior",
                "rate_bits_per_image", "mse", "psnr", "levels", "correction", "figures", "step"):
        assert key in data, key
    assert set(data["bits_per_dim"]) == {"distortion", "rate_uniform", "total_uniform",
                                         "rate_empirical", "total_empirical"}
    assert data["split"] == "test" and data["images"] == result["images"] > 0
    level = data["levels"][0]
    for key in ("codebook_size", "positions", "entropy_nats", "perplexity", "used_fraction",
                "dead_codes", "mean_position_entropy_nats", "mutual_information_nats",
                "mean_offdiagonal_mi_nats", "total_correlation_nats"):
        assert key in level, key
    mi = level["mutual_information_nats"]
    assert [mi[i][i] for i in range(len(mi))] == pytest.approx(level["entropy_nats"])
    for name in data["figures"].values():
        assert (out / name).stat().st_size > 1000, name
    assert {"mutual_information", "entropy_maps", "reconstructions", "hierarchy",
            "training_curves"} <= set(data["figures"])
    report = (out / "report.md").read_text()
    assert "distortion only (paper convention)" in report and "total, empirical prior" in report


def test_miller_madow_correction_is_recorded_and_raises_entropy(runs, tmp_path):
    plain = write_eval(runs / "dq", tmp_path / "plain", prior_images=0, progress=False)
    mm = write_eval(runs / "dq", tmp_path / "mm", prior_images=0, progress=False, correction="miller-madow")
    assert mm["correction"] == "miller-madow"
    assert sum(mm["levels"][0]["entropy_nats"]) >= sum(plain["levels"][0]["entropy_nats"])
    assert "total_empirical" not in plain["bits_per_dim"]  # no prior was fitted


def test_compare_writes_one_table_and_one_figure(runs, tmp_path):
    out = compare_runs([runs / "dq", runs / "vq"], tmp_path / "cmp", prior_images=64, progress=False)
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| metric" in table and " dq " in table and " vq " in table
    assert "n/a (M=1)" in out["table"]  # one codebook: no pairs for MI
    assert (tmp_path / "cmp" / "mutual_information.png").stat().st_size > 1000
    assert set(json.loads((tmp_path / "cmp" / "compare.json").read_text())["results"]) == {"dq", "vq"}


def test_cli_eval_and_compare(runs, tmp_path, capsys):
    assert main(["eval", str(runs / "vq"), "--out", str(tmp_path / "e"), "--prior-images", "32"]) == 0
    assert "distortion bits/dim" in capsys.readouterr().out
    assert (tmp_path / "e" / "eval.json").is_file()
    assert main(["compare", str(runs / "dq"), str(runs / "vq"), "--out", str(tmp_path / "c"),
                 "--names", "DQ", "--prior-images", "32"]) == 2  # one name for two runs
    assert "--names has 1 names for 2 runs" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_compare_re_evaluates_when_the_options_differ(runs, tmp_path):
    write_eval(runs / "dq", prior_images=0, progress=False)  # eval-test/eval.json, no correction
    out = compare_runs([runs / "dq"], tmp_path / "c", prior_images=0, progress=False,
                       correction="miller-madow")
    assert out["results"]["dq"]["options"]["correction"] == "miller-madow"
    again = compare_runs([runs / "dq"], tmp_path / "c2", prior_images=0, progress=False,
                         correction="miller-madow")
    assert again["results"]["dq"]["options"] == out["results"]["dq"]["options"]


def test_eval_of_best_weights_goes_to_its_own_folder_with_its_own_step(runs):
    result = write_eval(runs / "dq", prior_images=0, progress=False, weights="best.safetensors")
    assert result["out"].endswith("eval-test-best")
    assert result["step"] == json.loads((runs / "dq" / "best.json").read_text())["step"]
