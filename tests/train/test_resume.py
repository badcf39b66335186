"""--resume bookkeeping and damaged checkpoints: what a newcomer's pass found, each pinned down."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from depthq.cli import main
from depthq.config import load_config
from depthq.errors import ConfigError, CorruptFileError, MissingFileError
from depthq.evaluate.result import EvalResult
from depthq.train import train
from depthq.runtime.checkpoints import read_checkpoint, sidecar, write_checkpoint
from depthq.runtime.logs import trim_history

TINY = ["recipe=null", "model.preset=tiny", "data.batch_size=8", "data.max_val_images=16", "train.log_every=1",
        "train.progress=false", "train.val_every=2", "train.checkpoint_every=2"]


def tiny(*overrides: str):
    return load_config(None, [*TINY, *overrides])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run of 4 steps: validations at 2 and 4, then extended to 6 with --resume."""
    run = tmp_path_factory.mktemp("resume") / "run"
    first = train(tiny("train.steps=4"), run)
    snapshot = {name: (run / name).read_text() for name in ("metrics.csv", "validation.jsonl", "config.yaml")}
    again = train(load_config(run / "config.yaml"), run, resume=True)  # finished: nothing to do
    unchanged = {name: (run / name).read_text() for name in snapshot}
    extended = train(load_config(run / "config.yaml", ["train.steps=6"]), run, resume=True)
    return run, first, again, extended, snapshot, unchanged


def _rows(run):
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    train_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    val_steps = [int(r["step"]) for r in rows if r["val/total_uniform_bpd"]]
    return train_steps, val_steps


def test_resuming_a_finished_run_changes_nothing(finished):
    run, first, again, _, snapshot, unchanged = finished
    assert unchanged == snapshot  # no re-validation, no duplicate rows
    assert again == first


def test_every_step_is_logged_once_and_the_logs_agree(finished):
    run, *_ = finished
    train_steps, val_steps = _rows(run)
    assert train_steps == [0, 1, 2, 3, 4, 5]  # the step count before each update, no repeat
    assert val_steps == [2, 4, 6]  # the step-4 validation survives the extension
    jsonl = [EvalResult.from_dict(json.loads(line)).source.step
             for line in (run / "validation.jsonl").read_text().splitlines()]
    assert jsonl == val_steps == [int(p.stem.split("_")[1]) for p in sorted((run / "grids").glob("*.png"))]


def test_extending_a_run_accumulates_its_time_and_records_the_new_length(finished):
    run, first, _, extended, *_ = finished
    assert extended.steps == 6 and extended.train_seconds > first.train_seconds
    assert load_config(run / "config.yaml").train.steps == 6
    assert extended.validation.source.step == 6


@pytest.mark.parametrize("overrides, match", [
    (["data.batch_size=4"], r"--resume cannot change the data: data.batch_size was 8, now 4"),
    (["train.lr=0.1"], r"--resume cannot change the training: train.lr was 0.0002, now 0.1"),
    (["train.steps=3"], r"the checkpoint is at step 6: train.steps=3 would end before it"),
])
def test_resume_refuses_changes_other_than_extending(finished, overrides, match):
    run, *_ = finished
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=match):
        train(load_config(run / "config.yaml", overrides), run, resume=True)
    assert (run / "config.yaml").read_text() == before


def test_cli_resume_refuses_another_config_file(finished, capsys):
    run, *_ = finished
    assert main(["train", "--resume", "--run-dir", str(run), "-c", "configs/photos.yaml"]) == 2
    assert "--config cannot be combined with it" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_a_damaged_last_checkpoint_is_refused_offering_the_best(finished, tmp_path, damage):
    run, *_ = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "checkpoints" / "last.ckpt"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data[: len(data) // 3] if damage == "truncate" else b"" if damage == "empty" else data))
    config = load_config(copy / "config.yaml")
    with pytest.raises(CorruptFileError, match=r"cannot resume: checkpoint .*last.ckpt .*best.ckpt \(step \d\) is "
                                               r"intact: continue from it with --resume best"):
        train(config, copy, resume=True)
    assert main(["train", "--resume", "--run-dir", str(copy)]) == 2


def test_resume_from_the_best_checkpoint(finished, tmp_path):
    run, *_ = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "last.ckpt").write_bytes(b"")
    best_step = read_checkpoint(copy / "checkpoints" / "best.ckpt")["global_step"]
    summary = train(load_config(copy / "config.yaml"), copy, resume="best")
    assert summary.steps == 6
    train_steps, val_steps = _rows(copy)
    assert train_steps == list(range(6)) and sorted(set(val_steps)) == val_steps  # redone, not duplicated
    assert best_step in val_steps


def test_a_checkpoint_replaced_mid_write_still_verifies(tmp_path):
    path = tmp_path / "last.ckpt"
    write_checkpoint({"global_step": 1}, path)
    old = path.read_bytes()
    write_checkpoint({"global_step": 2}, path)
    path.write_bytes(old)  # as if killed after the checksum file was replaced, before the rename
    assert read_checkpoint(path)["global_step"] == 1
    assert json.loads(sidecar(path).read_text())["step"] == 2


def test_trimming_keeps_the_validation_of_the_checkpoint_step(tmp_path):
    rows = [("0", "1.0", ""), ("1", "1.0", ""), ("2", "", "7.0"), ("2", "1.0", ""), ("3", "1.0", ""),
            ("4", "", "6.0"), ("4", "1.0", "")]
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train/loss", "val/total_uniform_bpd"])
        writer.writerows(rows)
    trim_history(tmp_path, 4)
    kept = [(r["step"], r["train/loss"], r["val/total_uniform_bpd"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert kept == rows[:-1]  # the training row of step 4 will be logged again; its validation stays


def test_a_data_error_leaves_no_run_directory_behind(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with pytest.raises(MissingFileError, match="cifar10"):
        train(tiny("data.name=cifar10", "train.steps=2"), run)  # no $DEPTHQ_DATA, no root
    assert not run.exists()
    assert train(tiny("train.steps=2"), run).steps == 2  # a retry into the same folder works
