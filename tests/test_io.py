"""Saved weights: checksummed in their own header; corrupt, truncated or foreign weights are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import depthq
from depthq.errors import CorruptFileError
from depthq.io import CHECKSUM_KEY, Export, read_export, read_weights, save_model
from depthq.models import HierarchicalAutoencoder, preset


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(preset("tiny"))
    save_model(model, tmp_path / "run", export=Export(model=model.config, step=7))
    return model, tmp_path / "run"


def _flip(path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))


def test_save_and_load_round_trip_with_the_checksum_in_the_header(saved):
    model, run = saved
    loaded = depthq.load(run)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    header_size = int.from_bytes((run / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((run / "model.safetensors").read_bytes()[8 : 8 + header_size])
    assert len(header["__metadata__"][CHECKSUM_KEY]) == 64
    assert read_export(run, "model.safetensors").step == 7


def test_a_bit_flipped_weights_file_is_refused_naming_it(saved):
    _, run = saved
    _flip(run / "model.safetensors", 0.7)  # inside the tensor data
    with pytest.raises(CorruptFileError, match=r"model.safetensors does not match the checksum stored in it"):
        depthq.load(run)


@pytest.mark.parametrize("keep", [0, 5, 0.5])
def test_a_truncated_or_emptied_weights_file_is_refused(saved, keep):
    _, run = saved
    path = run / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CorruptFileError, match=r"model.safetensors is truncated"):
        read_weights(path)


def test_weights_of_another_model_are_refused(saved, tmp_path):
    _, run = saved
    other = HierarchicalAutoencoder(preset("tiny", quantizer="vq"))
    save_model(other, tmp_path / "other")
    with pytest.raises(CorruptFileError, match=r"was saved for another model .*quantizer: 'vq' there, 'dq' here"):
        depthq.load(run, weights=str(tmp_path / "other" / "model.safetensors"))
    # without its sidecar the tensors themselves do not fit
    shutil.copy(tmp_path / "other" / "model.safetensors", run / "foreign.safetensors")
    with pytest.raises(CorruptFileError, match=r"foreign.safetensors does not fit the model of .*config.json"):
        depthq.load(run, weights="foreign.safetensors")


def test_weights_saved_without_a_checksum_still_load(saved):
    from safetensors.torch import save_file

    model, run = saved
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "model.safetensors"))
    assert isinstance(depthq.load(run), HierarchicalAutoencoder)


def test_cli_eval_of_corrupt_weights_is_one_line(saved, capsys):
    from depthq.cli import main

    _, run = saved
    _flip(run / "model.safetensors", 0.9)
    assert main(["eval", str(run), "--data", "photos", "--prior-images", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the checksum" in err[0] and "Traceback" not in err[0]
