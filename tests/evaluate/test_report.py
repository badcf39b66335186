"""depthq eval / compare: the files exist and eval.json holds the typed result."""

from __future__ import annotations

import json

import pytest

from depthq.cli import main
from depthq.config import load_config
from depthq.runs import compare_runs, read_eval, write_eval
from depthq.evaluate.result import EvalOptions, EvalResult
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
    report = write_eval(runs / "dq", EvalOptions(prior_images=64, batch_size=64), progress=False)
    out = runs / "dq" / "eval-test"
    assert report.out == out
    data = read_eval(out / "eval.json")
    assert data == report.result  # the file round-trips to the very same result
    assert {f.key for f in data.figures} == {"distortion", "rate_uniform", "total_uniform",
                                             "rate_empirical", "total_empirical"}
    assert data.split == "test" and data.images > 0 and data.source.step == 3
    assert data.rate("empirical").description.startswith("code frequencies of 64 photos training images")
    level = data.levels[0]
    assert level.codebooks == 2 and level.position_entropy is not None and level.total_correlation is not None
    mi = level.mutual_information
    assert [mi[i][i] for i in range(len(mi))] == pytest.approx(level.entropies)
    assert level.total_correlation == pytest.approx(sum(level.entropies) - level.joint_entropy)
    for name in report.figures.values():
        assert (out / name).stat().st_size > 1000, name
    assert {"mutual_information", "entropy_maps", "reconstructions", "hierarchy",
            "training_curves"} <= set(report.figures)
    text = (out / "report.md").read_text()
    assert "distortion bits/dim (paper convention)" in text and "total bits/dim, empirical prior" in text
    assert "information per position" in text and "plug-in" in text


def test_miller_madow_correction_is_recorded_and_raises_entropy(runs, tmp_path):
    plain = write_eval(runs / "dq", EvalOptions(prior_images=0), tmp_path / "plain", progress=False).result
    mm = write_eval(runs / "dq", EvalOptions(prior_images=0, correction="miller-madow"), tmp_path / "mm",
                    progress=False).result
    assert mm.options.correction == "miller-madow"
    assert sum(mm.levels[0].entropies) >= sum(plain.levels[0].entropies)
    assert mm.levels[0].joint_entropy >= plain.levels[0].joint_entropy
    assert plain.rate("empirical") is None and plain.total("empirical") is None  # no prior was fitted


def test_compare_writes_one_table_and_one_figure(runs, tmp_path):
    out = compare_runs([runs / "dq", runs / "vq"], tmp_path / "cmp", EvalOptions(prior_images=64), progress=False)
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| metric" in table and " dq " in table and " vq " in table
    assert "n/a (M=1)" in out.table  # one codebook: no pairs for MI
    assert (tmp_path / "cmp" / "mutual_information.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())["results"]
    assert set(saved) == {"dq", "vq"} and EvalResult.from_dict(saved["vq"]) == out.results["vq"]


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
    write_eval(runs / "dq", EvalOptions(prior_images=0), progress=False)  # eval-test/eval.json, no correction
    options = EvalOptions(prior_images=0, correction="miller-madow")
    out = compare_runs([runs / "dq"], tmp_path / "c", options, progress=False)
    assert out.results["dq"].options.correction == "miller-madow"
    again = compare_runs([runs / "dq"], tmp_path / "c2", options, progress=False)
    assert again.results["dq"].options == out.results["dq"].options


def test_eval_of_best_weights_goes_to_its_own_folder_with_its_own_step(runs):
    report = write_eval(runs / "dq", EvalOptions(prior_images=0, weights="best.safetensors"), progress=False)
    assert report.out.name == "eval-test-best"
    assert report.result.source.step == json.loads((runs / "dq" / "best.json").read_text())["step"]
