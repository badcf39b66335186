"""CompressAI's results files: published files read and written back unchanged, aggregation, checks."""

from __future__ import annotations

import json
import math

import pytest

from depthq.errors import SchemaError
from depthq.evaluate.compressai_schema import (
    SERIES,
    CodecResults,
    ImageResult,
    aggregate,
)

# The first 3 of 8 rate points of InterDigitalInc/CompressAI results/image/kodak/
# compressai-bmshj2018-factorized_mse_cuda.json (commit 869a9f5, 2025-06-25), as published: the
# keys, nesting and order eval_model writes.
PUBLISHED_MODEL = {
    "name": "bmshj2018-factorized",
    "description": "Inference (ans)",
    "results": {
        "psnr-rgb": [26.908817394289304, 28.217925699960002, 29.616915231568353],
        "ms-ssim-rgb": [0.909988597035408, 0.9360475639502207, 0.9554706936081251],
        "bpp": [0.1226230197482639, 0.18852742513020834, 0.2878078884548611],
        "encoding_time": [0.029442240794499714, 0.022808889547983806, 0.044924656550089516],
        "decoding_time": [0.015836328268051147, 0.014355729023615519, 0.018537739912668865],
    },
}

# The first 3 of 6 points of results/image/kodak/paper-minnen2018-checkerboard_mse.json (same
# commit): a published paper curve, with "meta" and MS-SSIM already in dB.
PUBLISHED_PAPER = {
    "name": "minnen2018-checkerboard",
    "description": "official results",
    "meta": {
        "source": "paper",
        "url": "https://arxiv.org/abs/2103.15306",
        "type": "image",
        "opt_metric": "mse-rgb",
        "dataset": "kodak",
        "train_dataset": "imagenet_val",
        "device": None,
    },
    "results": {
        "bpp": [0.109, 0.184, 0.326],
        "psnr-rgb": [27.632, 29.395, 31.553],
        "ms-ssim-db-rgb": [10.590, 12.349, 14.505],
    },
}


def test_a_published_model_file_reads_typed_and_writes_back_unchanged():
    r = CodecResults.from_dict(PUBLISHED_MODEL)
    assert r.name == "bmshj2018-factorized" and r.description == "Inference (ans)" and r.points == 3
    assert r.bpp[0] == 0.1226230197482639 and r.psnr_rgb[2] == 29.616915231568353
    assert r.ms_ssim_rgb[1] == 0.9360475639502207 and r.decoding_time[0] == 0.015836328268051147
    assert all(isinstance(v, float) for key in SERIES if r.series(key) for v in r.series(key))
    out = r.to_dict()
    assert out == PUBLISHED_MODEL
    assert list(out) == list(PUBLISHED_MODEL) and list(out["results"]) == list(PUBLISHED_MODEL["results"])


def test_a_published_paper_curve_keeps_its_meta_and_db_series():
    r = CodecResults.from_dict(PUBLISHED_PAPER)
    assert r.ms_ssim_rgb is None and r.encoding_time is None and r.meta["url"].endswith("2103.15306")
    assert r.series("ms-ssim-db-rgb") == (10.590, 12.349, 14.505)
    assert r.to_dict() == PUBLISHED_PAPER


def test_ms_ssim_in_db_is_derived_as_compressai_plots_it():
    r = CodecResults.from_dict(PUBLISHED_MODEL)
    db = r.series("ms-ssim-db-rgb")
    assert db[0] == pytest.approx(-10 * math.log10(1 - 0.909988597035408))


def test_files_round_trip_and_a_bare_results_object_is_named_by_its_file(tmp_path):
    r = CodecResults.from_dict(PUBLISHED_MODEL)
    assert CodecResults.read(r.write(tmp_path / "model.json")) == r
    bare = tmp_path / "jpeg-anchor.json"
    bare.write_text(json.dumps(PUBLISHED_MODEL["results"]))  # CompressAI's plot reads these too
    read = CodecResults.read(bare)
    assert read.name == "jpeg-anchor" and read.bpp == tuple(PUBLISHED_MODEL["results"]["bpp"])


def test_unknown_series_are_kept_and_written_back():
    data = json.loads(json.dumps(PUBLISHED_PAPER))
    data["results"]["psnr-y"] = [30.0, 31.0, 32.0]
    r = CodecResults.from_dict(data)
    assert r.extra == {"psnr-y": (30.0, 31.0, 32.0)} and r.to_dict() == data


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d["results"]["psnr-rgb"].pop(), "list of 3 numbers"),
        (lambda d: d["results"].pop("bpp"), "'bpp' series"),
        (lambda d: d["results"]["bpp"].__setitem__(0, "0.1"), "expected a number"),
        (lambda d: d["results"]["bpp"].__setitem__(0, True), "expected a number"),
        (lambda d: d["results"]["psnr-rgb"].__setitem__(0, float("inf")), "finite"),
        (lambda d: d["results"]["ms-ssim-rgb"].__setitem__(0, 1.5), r"\[0, 1\]"),
        (lambda d: d["results"]["bpp"].__setitem__(0, 0.0), "> 0"),
        (lambda d: d.__setitem__("model", "x"), "unknown top-level keys"),
        (lambda d: d.pop("name"), "non-empty name"),
        (lambda d: d.__setitem__("source", "kodim01"), "per-image"),
    ],
)
def test_malformed_files_raise_schema_errors(change, match):
    data = json.loads(json.dumps(PUBLISHED_MODEL))
    change(data)
    with pytest.raises(SchemaError, match=match):
        CodecResults.from_dict(data)


def test_a_broken_file_names_its_path(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(SchemaError, match="broken.json: not JSON"):
        CodecResults.read(path)


def _image(source: str, bpp: float, psnr: float, ms_ssim: float | None = 0.95) -> ImageResult:
    return ImageResult(source, bpp, psnr, ms_ssim, encoding_time=0.01, decoding_time=0.002)


def test_aggregate_takes_means_per_point_as_compressai_does():
    points = [
        [_image("a", 0.2, 28.0, 0.90), _image("b", 0.4, 30.0, 0.94)],
        [_image("b", 0.9, 35.0, 0.98), _image("a", 0.5, 31.0, 0.96)],  # order within a point is free
    ]
    r = aggregate("codec", "test", points)
    assert r.bpp == pytest.approx((0.3, 0.7)) and r.psnr_rgb == pytest.approx((29.0, 33.0))  # mean of PSNRs
    assert r.ms_ssim_rgb == pytest.approx((0.92, 0.97)) and r.encoding_time == pytest.approx((0.01, 0.01))
    out = r.to_dict()
    assert list(out) == ["name", "description", "results"]
    assert list(out["results"]) == list(PUBLISHED_MODEL["results"])  # eval_model's keys, in its order


def test_a_series_some_image_lacks_is_left_out_not_averaged_over_a_subset():
    points = [[_image("a", 0.2, 28.0, None), _image("b", 0.4, 30.0)], [_image("a", 0.5, 31.0), _image("b", 0.9, 35.0)]]
    r = aggregate("codec", "", points)
    assert r.ms_ssim_rgb is None and "ms-ssim-rgb" not in r.to_dict()["results"] and r.psnr_rgb is not None


def test_aggregate_refuses_points_over_different_images():
    with pytest.raises(ValueError, match="point 1 holds images"):
        aggregate("codec", "", [[_image("a", 0.2, 28.0)], [_image("b", 0.4, 30.0)]])
    with pytest.raises(ValueError, match="at least one rate point"):
        aggregate("codec", "", [])


def test_per_image_results_have_eval_models_per_image_layout():
    image = ImageResult("kodim01", 0.5, 30.25, 0.97, 0.011, 0.004)
    out = image.to_dict("JPEG", "JPEG. Pillow version 11")
    assert out == {
        "source": "kodim01",
        "name": "JPEG",
        "description": "JPEG. Pillow version 11",
        "results": {"psnr-rgb": 30.25, "ms-ssim-rgb": 0.97, "bpp": 0.5, "encoding_time": 0.011, "decoding_time": 0.004},
    }
    assert ImageResult.from_dict(json.loads(json.dumps(out))) == image
    assert "ms-ssim-rgb" not in ImageResult("small", 0.5, 30.0).to_dict("x", "")["results"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"psnr_rgb": math.inf}, "finite"),
        ({"bpp": -1.0}, "> 0"),
        ({"ms_ssim_rgb": 1.2}, r"\[0, 1\]"),
        ({"encoding_time": -0.1}, "seconds"),
        ({"source": ""}, "source"),
    ],
)
def test_bad_image_results_raise(kwargs, match):
    values = {"source": "a", "bpp": 0.5, "psnr_rgb": 30.0} | kwargs
    with pytest.raises(SchemaError, match=match):
        ImageResult(**values)
