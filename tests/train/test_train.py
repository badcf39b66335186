"""Training on Lightning: files written, load, resume, kill-and-resume, DDP, bad configs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import depthq
from depthq.config import load_config
from depthq.evaluate.result import EvalResult
from depthq.train import train

TINY = [
    "recipe=null", "model.preset=tiny", "data.batch_size=8", "data.max_val_images=16", "train.log_every=1",
    "train.progress=false",
]


def tiny_config(*overrides: str):
    return load_config(None, [*TINY, *overrides])


def test_a_tiny_run_writes_the_expected_files(tmp_path):
    run = tmp_path / "run"
    summary = train(tiny_config("train.steps=6", "train.val_every=3", "train.checkpoint_every=3"), run)
    for name in ("config.yaml", "config.json", "metrics.csv", "validation.jsonl", "summary.json",
                 "model.safetensors", "best.safetensors", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                 "grids/step_0000003.png", "grids/step_0000006.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert summary.steps == 6
    bits = {f.key: f.bits_per_dim for f in summary.validation.figures}
    assert set(bits) == {"distortion", "rate_uniform", "total_uniform", "rate_empirical", "total_empirical"}
    assert bits["total_uniform"] == pytest.approx(bits["distortion"] + bits["rate_uniform"])
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/total_uniform_bpd" in header
    # the checkpoint loads without unpickling arbitrary objects
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6 and "depthq_rng" in state


def test_load_reproduces_the_trained_model(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.steps=4", "train.val_every=4"), run)
    model = depthq.load(run)
    assert not model.training
    weights = load_file(str(run / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    again = depthq.load(run)
    assert torch.equal(model(x).params, again(x).params)
    with pytest.raises(FileNotFoundError, match="config.json"):
        depthq.load(tmp_path / "nowhere")


def test_resume_continues_the_step_count_and_keeps_history(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.steps=4", "train.val_every=2", "train.checkpoint_every=2"), run)
    config = load_config(run / "config.yaml", ["train.steps=7"])
    summary = train(config, run, resume=True)
    assert summary.steps == 7
    logged = sorted({int(float(r["step"])) for r in csv.DictReader(open(run / "metrics.csv"))})
    assert logged[0] == 0 and logged[-1] >= 6  # rows from both sessions are kept
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config("train.steps=2"), run)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(tiny_config("train.steps=2"), tmp_path / "fresh", resume=True)


def test_exploding_updates_are_skipped_and_counted(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.steps=2", "train.val_every=2", "train.checkpoint_every=2"), run)
    before = load_file(str(run / "model.safetensors"))
    adam_before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]["state"]
    # Adam has momentum now: any update that was not really dropped would move the weights
    config = load_config(run / "config.yaml", ["train.steps=4", "train.skip_grad_norm=1e-12"])
    summary = train(config, run, resume=True)
    assert summary.skipped_steps == 2 and summary.steps == 4
    # ...and the optimizer's state (step count, moments) is that of step 2
    adam_after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]["state"]
    assert adam_before.keys() == adam_after.keys()
    for key, state in adam_before.items():
        assert float(state["step"]) == 2
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], adam_after[key][name]), (key, name)
    after = load_file(str(run / "model.safetensors"))
    trainable = {name for name, _ in depthq.load(run).named_parameters()}
    assert trainable
    for name in trainable:
        assert torch.equal(before[name], after[name]), name


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from depthq.config import load_config
    from depthq.train import train

    class KillAt(L.Callback):
        def __init__(self, step):
            self.step = step
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, mid-run

    run, steps, kill, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    overrides = {overrides!r} + [f"train.steps={{steps}}"]
    config = load_config(os.path.join(run, "config.yaml") if resume else None, overrides)
    train(config, run, resume=resume, callbacks=[KillAt(kill)] if kill >= 0 else [])
    """
)


def _run_script(script: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = [*TINY, "train.val_every=3", "train.checkpoint_every=2", "train.seed=7",
                 "model.dead_code_threshold=1.0"]
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(overrides=overrides))
    straight = _run_script(script, tmp_path / "straight", 8, -1, 0)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _run_script(script, tmp_path / "killed", 8, 5, 0)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL at step 5, after the step-4 checkpoint
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = _run_script(script, tmp_path / "killed", 8, -1, 1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import lightning as L
    import torch
    from depthq.terminal import quiet_terminal
    from depthq.config import load_config
    from depthq.train import train
    from depthq.cli.train import report

    class SaveCodebooks(L.Callback):
        def on_train_end(self, trainer, module):
            state = {{f"q{{i}}": q.codebooks.detach().clone() for i, q in enumerate(module.model.quantizers)}}
            torch.save(state, os.path.join(sys.argv[1], f"codebooks_rank{{trainer.global_rank}}.pt"))

    quiet_terminal(verbose=False)  # as `depthq train` sets up the terminal
    config = load_config(None, {overrides!r})
    report(train(config, sys.argv[1], callbacks=[SaveCodebooks()]))
    """
)


def test_two_process_cpu_ddp_keeps_codebooks_identical(tmp_path):
    overrides = [*TINY, "train.steps=4", "train.val_every=4", "train.devices=2",
                 "train.accelerator=cpu", "train.strategy=ddp", "train.precision=32"]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(overrides=overrides))
    run = tmp_path / "run"
    result = _run_script(script, run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("load it with") == 1  # one summary, from rank 0
    assert result.stderr.count("INFO depthq.train.run: training dq") == 1, result.stderr[-3000:]
    assert "Tip:" not in result.stderr and "LeafSpec" not in result.stderr
    ranks = [torch.load(run / f"codebooks_rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    initial = depthq.models.HierarchicalAutoencoder(load_config(None, overrides).model)
    assert not torch.equal(ranks[0]["q0"], initial.quantizers[0].codebooks)  # they did train


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.levls=[8]"], "unknown key model.levls"),
        (["train.lr=fast"], "train.lr must be of type float"),
        (["data.batch_size=0"], "data.batch_size must be an int >= 1"),
        (["train.precision=64"], "train.precision must be one of"),
        (["model.image_size=30"], "not divisible by the total stride"),
        (["data.schedule=[{image_size: 32, steps: 3}]", "train.steps=5"], "data.schedule has 3 steps"),
        (["data.name=mnist"], "mnist"),
        (["train.grad_clip=.nan"], "train.grad_clip must be a finite number"),
        (["model.beta=.nan"], "model.beta must be a finite number"),
    ],
)
def test_bad_configs_fail_naming_the_key(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(tiny_config(*overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a bad config


def test_resume_refuses_a_changed_model_before_writing_anything(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.steps=2", "train.val_every=2", "train.checkpoint_every=2"), run)
    before = (run / "config.yaml").read_text()
    changed = load_config(run / "config.yaml", ["model.codebook_sizes=[32,32]", "train.steps=4"])
    with pytest.raises(ValueError, match=r"--resume cannot change the model: model.codebook_sizes was \[16, 16\]"):
        train(changed, run, resume=True)
    assert (run / "config.yaml").read_text() == before  # the run is left as it was


def test_a_checkpoint_taken_at_a_validation_step_already_holds_that_validation(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.steps=2", "train.val_every=2", "train.checkpoint_every=2"), run)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    validation = EvalResult.from_dict(json.loads((run / "validation.jsonl").read_text().splitlines()[0]))
    artifacts = next(v for k, v in state["callbacks"].items() if "RunArtifacts" in k)
    assert artifacts["best"] == pytest.approx(validation.total("uniform"))
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == 2
    assert json.loads((run / "best.json").read_text())["step"] == 2  # the sidecar of best.safetensors


def test_only_rank_zero_owns_the_run_directory(monkeypatch):
    from depthq.runtime import is_main_process

    assert is_main_process()
    for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
        with monkeypatch.context() as m:
            m.setenv(var, "1")
            assert not is_main_process(), var
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert is_main_process()


def test_cli_shortcuts_keep_text_values_as_text(capsys):
    from depthq.cli import main

    assert main(["train", "--root", "~", "--data", "photos", "--precision", "32", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "root: '~'" in printed and "precision: '32'" in printed


def test_gradients_are_clipped_to_train_grad_clip():
    from depthq.train.module import DQModule

    module = DQModule(tiny_config("train.grad_clip=1e-3"))
    out = module.model(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    out.loss.backward()

    class Opt:
        param_groups = [{"lr": 1e-3}]

    module.log_dict = lambda *a, **k: None  # not attached to a trainer
    module.on_before_optimizer_step(Opt())
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None]))
    assert total == pytest.approx(1e-3, rel=1e-3)


def test_compiled_training_runs_and_trains_the_same_model(tmp_path, monkeypatch):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    # Dynamo's tracing and AOT autograd as train.compile uses them, with the eager backend:
    # inductor's C++ compile takes minutes on a 2-core CPU (tests/train/test_train_cuda.py runs it)
    real_compile = torch.compile
    compiled = []

    def compile_eagerly(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend="aot_eager", fullgraph=False)

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    runs = {}
    for flag in ("false", "true"):
        config = tiny_config("train.steps=3", "train.val_every=3", "train.precision=32", f"train.compile={flag}")
        train(config, tmp_path / flag)
        runs[flag] = load_file(str(tmp_path / flag / "model.safetensors"))
    assert len(compiled) == 1  # the training forward of the compiled run, once
    for name, value in runs["false"].items():
        torch.testing.assert_close(runs["true"][name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_batches_built_where_the_images_are_train_the_same_model(tmp_path, monkeypatch):
    # On a GPU the training sets are kept there and each batch is gathered and augmented there
    # (data.device_cache_mb); the same path runs here with the CPU standing in for the GPU.
    from depthq.data.module import ImageDataModule

    runs = {}
    for on_device in (False, True):
        monkeypatch.setattr(ImageDataModule, "_fits_on_device", lambda self, sets, flag=on_device: flag)
        config = tiny_config("train.steps=3", "train.val_every=3", "train.precision=32",
                             "data.augment_flip=true", "data.augment_crop=2")
        train(config, tmp_path / str(on_device))
        runs[on_device] = load_file(str(tmp_path / str(on_device) / "model.safetensors"))
    for name, value in runs[False].items():
        assert torch.equal(runs[True][name], value), name
