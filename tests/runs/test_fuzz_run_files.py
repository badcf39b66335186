"""A seeded, time-bounded mutation fuzzer over the files of a run folder that depthq reads back:
``config.json``, the weights' sidecar ``model.json``, ``model.safetensors``, and the prior's
``prior.json`` and ``prior.safetensors``.

Every mutated folder is opened as ``depthq eval`` and ``depthq compress`` open one
(``SavedRun.open`` then ``run.prior()``); the outcome must be a load or a ``DepthqError`` of one
line, within a time bound, and under an address-space limit: a crafted file must not make
depthq allocate in proportion to what it claims (a model of a million channels, a tensor header
of a terabyte). Run it longer by hand: ``DEPTHQ_FUZZ_SECONDS=120 pytest tests/runs/test_fuzz_run_files.py -s``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from depthq.config import DataConfig, RunConfig
from depthq.errors import DepthqError
from depthq.io import Export, save_model, state_digest
from depthq.models import HierarchicalAutoencoder, preset
from depthq.prior import CodeLayout, PriorConfig, PriorModel, save_prior
from depthq.runs import SavedRun

SECONDS = float(os.environ.get("DEPTHQ_FUZZ_SECONDS", "6"))
CASE_SECONDS = 10.0  # one case: far above what a load of this tiny run takes
HEADROOM = 2 * 2**30  # address space a case may add beyond what the process holds


def _hostile_values(rng: random.Random) -> list:
    nested: list = []
    for _ in range(300):
        nested = [nested]
    return [-1, 0, 1, 2**31, 10**7, 2**62, 1e308, -1e308, 0.5, "x" * rng.randint(0, 9), None, True, [], {}, nested,
            [10**7] * 3]  # fmt: skip


def _paths(value, prefix=()):
    """Every (path, leaf) of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))
    else:
        yield prefix, value


def _set(value, path, new):
    if not path:
        return new
    *head, last = path
    target = value
    for key in head:
        target = target[key]
    target[last] = new
    return value


def mutate_json(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["value", "value", "value", "delete", "add", "truncate", "flip", "not json"])
    if kind in ("truncate", "flip", "not json"):
        return mutate_bytes(data, rng, kind)
    value = json.loads(data)
    paths = [p for p, _ in _paths(value) if p]
    path = rng.choice(paths)
    if kind == "value":
        value = _set(value, path, rng.choice(_hostile_values(rng)))
    elif kind == "delete":
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    else:
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict):
            parent["unexpected"] = rng.choice(_hostile_values(rng))
        else:
            value = {"unexpected": value}
    return f"json {kind}", json.dumps(value).encode()


def mutate_bytes(data: bytes, rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    kind = kind or rng.choice(["truncate", "flip", "flip", "insert"])
    b = bytearray(data)
    if kind == "truncate":
        b = b[: rng.randrange(0, len(b))]
    elif kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    else:  # not json
        b = bytearray(rng.randbytes(rng.randint(0, 200)))
    return f"bytes {kind}", bytes(b)


def mutate_safetensors(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["header length", "header json", "bytes"])
    size = int.from_bytes(data[:8], "little")
    if kind == "header length":
        claim = rng.choice([0, 1, size - 1, size + 1, 2**40, 2**63 - 1])
        return "safetensors header length", struct.pack("<Q", claim) + data[8:]
    if kind == "header json":
        header = json.loads(data[8 : 8 + size])
        name = rng.choice([k for k in header if k != "__metadata__"])
        field = rng.choice(["shape", "data_offsets", "dtype"])
        header[name][field] = {
            "shape": rng.choice([[10**7, 10**7], [2**40], [-1], []]),
            "data_offsets": rng.choice([[0, 2**40], [5, 3], [0, 0]]),
            "dtype": rng.choice(["F64", "I8", "nope"]),
        }[field]
        text = json.dumps(header).encode()
        return f"safetensors {field}", struct.pack("<Q", len(text)) + text + data[8 + size :]
    return mutate_bytes(data, rng)


MUTATORS = {".json": mutate_json, ".safetensors": mutate_safetensors}


def _open(run_dir: Path) -> None:
    run = SavedRun.open(run_dir)
    run.prior()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fuzz") / "run"
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(preset("tiny")).eval()
    prior = PriorModel(CodeLayout.of(model.config, 16), PriorConfig(dim=16, layers=1, heads=2)).eval()
    save_model(model, run, export=Export(model=model.config, run=RunConfig(model=model.config, data=DataConfig())))
    save_prior(prior, run / "prior", image_size=16, image_channels=3, autoencoder_digest=state_digest(model))
    _open(run)  # the original loads
    return run


def test_mutated_run_files_load_or_give_one_line(run_dir, tmp_path):
    files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.suffix in MUTATORS)
    assert {f.name for f in files} >= {"config.json", "model.json", "model.safetensors", "prior.json",
                                       "prior.safetensors"}  # fmt: skip
    rng = random.Random(0)
    outcomes: Counter = Counter()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vms = int(f.read().split()[0]) * resource.getpagesize()
    limit = vms + HEADROOM
    start, cases = time.monotonic(), 0
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        while time.monotonic() - start < SECONDS or cases < 40:
            target = files[cases % len(files)]
            case = tmp_path / f"case{cases}"
            shutil.copytree(run_dir, case)
            kind, data = MUTATORS[target.suffix]((run_dir / target).read_bytes(), rng)
            (case / target).write_bytes(data)
            began = time.monotonic()
            try:
                _open(case)
                outcome = "loads"
            except DepthqError as err:
                message = str(err)
                assert "\n" not in message.strip(), f"{target} ({kind}): a message of several lines: {message!r}"
                outcome = "refused"
            except BaseException as err:  # noqa: BLE001  (what the test is for: nothing else may escape)
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
                raise AssertionError(f"{target} ({kind}): {type(err).__name__}: {str(err)[:300]}") from err
            elapsed = time.monotonic() - began
            assert elapsed < CASE_SECONDS, f"{target} ({kind}): {elapsed:.1f} s"
            outcomes[str(target), kind, outcome] += 1
            shutil.rmtree(case)
            cases += 1
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(f"\n{cases} mutated run folders in {time.monotonic() - start:.1f} s:")
    for (target, kind, outcome), n in sorted(outcomes.items()):
        print(f"  {target:<26} {kind:<28} {outcome:<8} {n}")
    assert sum(n for (_, _, o), n in outcomes.items() if o == "refused") > cases // 2  # the mutations bite


@pytest.mark.parametrize(
    "target, change",
    [
        ("config.json", {"model": {"channels": 65536, "res_channels": 65536}}),  # about 10^11 parameters
        ("model.json", {"model": {"channels": 65536, "res_channels": 65536}}),
        ("prior/prior.json", {"prior": {"dim": 2**15, "layers": 512, "heads": 8}}),  # about 6 x 10^12
        ("prior/prior.json", {"layout": {"grids": [[2**20, 2**20], [2**19, 2**19]]}}),  # 10^12 positions
    ],
)
def test_a_record_claiming_a_huge_model_is_refused_before_it_is_allocated(run_dir, tmp_path, target, change):
    case = tmp_path / "run"
    shutil.copytree(run_dir, case)
    record = json.loads((case / target).read_text())
    for key, values in change.items():
        record[key] = {**record[key], **values}
    (case / target).write_text(json.dumps(record))
    if target == "model.json":  # the sidecar must agree with config.json, so change both
        (case / "config.json").write_text(json.dumps(record))
    elif target == "config.json":  # weights without a sidecar: config.json alone describes them
        (case / "model.json").unlink()
    with pytest.raises(DepthqError, match="does not fit"):
        _open(case)
