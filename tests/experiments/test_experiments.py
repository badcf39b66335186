"""The experiments at toy size: capacity by hand, output structure, resumability."""

from __future__ import annotations

import json
import math

import pytest

from depthq.cli import main
from depthq.experiments import ablation, decoupling
from depthq.experiments.capacity import capacity


def test_capacity_matches_hand_computation():
    c = capacity(5, 32, 64, 8, 8)
    assert c.bits_per_position == 25.0  # 5 * log2 32
    assert c.bits_per_image == 64 * 25
    assert c.code_vectors == 160 and c.codebook_parameters == 160 * 64
    assert c.vq_codebook_size == 32**5 == 33_554_432
    assert c.vq_code_dim == 320 and c.vq_codebook_parameters == 32**5 * 320
    assert c.vq_bits_same_cost == pytest.approx(math.log2(160))
    one = capacity(1, 1024, 8)
    assert one.bits_per_position == 10 and one.vq_codebook_size == 1024 and one.positions == 1
    with pytest.raises(ValueError, match="codebook_size must be an int >= 1"):
        capacity(2, 0, 4)


def test_capacity_cli_prints_a_table(capsys):
    assert main(["capacity", "-M", "1", "4", "-K", "16", "-D", "8", "--shape", "4", "4"]) == 0
    out = capsys.readouterr().out
    assert "65,536" in out and "| 4 |" in out  # 16^4 VQ codes for M=4
    assert main(["capacity", "-M", "2", "-K", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["bits_per_position"] == 6 and rows[0]["vq_codebook_size"] == 64


def test_decoupling_writes_its_table_figure_and_seeds(tmp_path):
    out = decoupling.run(tmp_path / "dec", preset_name="toy")
    data = json.loads((tmp_path / "dec" / "results.json").read_text())
    assert data["config"]["seeds"] == [0, 1]
    variants = [r["variant"] for r in data["rows"]]
    assert variants == ["DQ", "VQ, equal code vectors", "VQ, equal rate", "coupled"]
    dq, vq_cost, vq_rate, _ = data["rows"]
    assert dq["code_vectors"] == vq_cost["code_vectors"] == 8  # M*K = 2*4
    assert dq["bits_per_position"] == vq_rate["bits_per_position"] == 4  # 2 * log2 4 = log2 16
    assert dq["distortion_bpd"]["n"] == 2 and len(dq["distortion_bpd"]["values"]) == 2
    assert dq["mean_offdiagonal_mi_nats"] is not None and vq_cost["mean_offdiagonal_mi_nats"] is None
    assert len(data["cells"]) == 8
    assert (tmp_path / "dec" / "mutual_information.png").stat().st_size > 1000
    md = (tmp_path / "dec" / "results.md").read_text()
    assert "distortion bits/dim (paper convention)" in md and "3.14" in md
    assert "± " in out.table


def test_ablation_is_resumable(tmp_path, capsys):
    first = ablation.run(tmp_path / "abl", preset_name="toy")
    assert [(r.quantizer, r.K) for r in first.rows] == [("dq", 4), ("dq", 8), ("vq", 4), ("vq", 8)]
    assert (tmp_path / "abl" / "heatmap.png").stat().st_size > 1000
    capsys.readouterr()
    # a cell whose evaluation is missing is the only one redone; finished cells are reused
    stamp = (tmp_path / "abl" / "cells" / "dq-M2-K4-D4" / "eval-test" / "eval.json").stat().st_mtime_ns
    import shutil

    shutil.rmtree(tmp_path / "abl" / "cells" / "vq-M2-K8-D4" / "eval-test")
    again = ablation.run(tmp_path / "abl", preset_name="toy")
    printed = capsys.readouterr().out
    assert printed.count("(done, reused)") == 3
    assert (tmp_path / "abl" / "cells" / "dq-M2-K4-D4" / "eval-test" / "eval.json").stat().st_mtime_ns == stamp
    assert [r.distortion_bpd for r in again.rows][:3] == [r.distortion_bpd for r in first.rows][:3]


def test_a_changed_preset_does_not_reuse_old_cells(tmp_path):
    ablation.run(tmp_path / "abl", preset_name="toy", codebook_sizes=[4], quantizers=["dq"])
    with pytest.raises(FileExistsError, match="other settings"):
        ablation.run(tmp_path / "abl", preset_name="toy", codebook_sizes=[4], quantizers=["dq"], steps=3)


def test_changed_settings_get_their_own_default_folder():
    from depthq.cli import build_parser
    from depthq.cli.experiment import _out

    parser = build_parser()
    assert str(_out(parser.parse_args(["experiment", "decoupling", "--quick"]))) == "results/decoupling-quick"
    assert str(_out(parser.parse_args(["experiment", "decoupling", "--quick", "--steps", "20"]))) == \
        "results/decoupling-quick-steps20"
    assert str(_out(parser.parse_args(["experiment", "ablation", "-K", "8", "64", "--data", "cifar10"]))) == \
        "results/ablation-full-cifar10-K8-64"


def test_a_folder_of_other_settings_is_refused_before_anything_runs(tmp_path):
    from depthq.experiments.common import claim_folder

    claim_folder(tmp_path / "x", {"experiment": "decoupling", "config": {"steps": 20}})
    claim_folder(tmp_path / "x", {"experiment": "decoupling", "config": {"steps": 20}})  # same: fine
    with pytest.raises(FileExistsError, match=r"other settings \(config: \{'steps': 20\} there, \{'steps': 600\} now"):
        claim_folder(tmp_path / "x", {"experiment": "decoupling", "config": {"steps": 600}})
