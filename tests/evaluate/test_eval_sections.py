"""``depthq eval`` with the learned prior, the codec anchors and the .dqz codec; non-finite counts.

A random tiny model saved as a run (no training needed: every figure here is checked against an
independent computation on the same weights), evaluated on the val images of the built-in photos.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import depthq
from depthq.atomic import write_json
from depthq.cli import main
from depthq.config import DataConfig, RunConfig
from depthq.data import ImageSet, get_dataset
from depthq.errors import CorruptFileError, UsageError
from depthq.evaluate import EvalOptions, EvalResult, evaluate
from depthq.evaluate import anchor_section as anchor_module
from depthq.evaluate.anchors import measure_anchors
from depthq.evaluate.report import format_report, format_table
from depthq.runs import compare_runs, read_eval, write_eval
from depthq.io import Export, save_model
from depthq.models import HierarchicalAutoencoder, preset
from depthq.io import state_digest
from depthq.prior import CodeLayout, PriorConfig, PriorModel, load_prior, save_prior

VAL = {"split": "val", "prior_images": 0, "batch_size": 8}  # the val split, no empirical prior


def random_prior(model: HierarchicalAutoencoder, seed: int = 1) -> PriorModel:
    """A prior over the model's 32x32 codes, its heads random (away from uniform)."""
    torch.manual_seed(seed)
    prior = PriorModel(CodeLayout.of(model.config, 32), PriorConfig(dim=16, layers=1, heads=2))
    for p in prior.heads.parameters():
        p.data = torch.randn(p.shape)
    return prior.eval()


def save_run(folder, model: HierarchicalAutoencoder, prior_of: HierarchicalAutoencoder | None = None):
    """``model`` as a run directory (photos); with a prior trained "for" ``prior_of``."""
    config = RunConfig(model=model.config, data=DataConfig(name="photos", val_fraction=0.005))
    save_model(model, folder, export=Export(model=model.config, run=config))
    if prior_of is not None:
        save_prior(random_prior(prior_of), folder / "prior", image_size=32, image_channels=3,
                   autoencoder_digest=state_digest(prior_of))
    return folder


def tiny(seed: int) -> HierarchicalAutoencoder:
    torch.manual_seed(seed)
    return HierarchicalAutoencoder(preset("tiny")).eval()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-sections")
    model = tiny(0)
    return {"with": save_run(root / "with", model, prior_of=model), "without": save_run(root / "without", model),
            "other": save_run(root / "other", model, prior_of=tiny(5))}


def test_the_learned_row_is_the_distortion_plus_the_priors_nll(runs):
    report = write_eval(runs["with"], EvalOptions(**VAL, anchors=False), progress=False)
    result = report.result
    # independently: the same weights and images, the head's NLL and the prior's NLL
    model = depthq.load(runs["with"])
    prior, info = load_prior(runs["with"], model=model)
    x = report.evaluation.images.images
    assert len(x) == result.images
    with torch.no_grad():
        codes = model.encode(x)
        nll = model.head.nll(model.decode(codes), x).double().mean().item()
        rate = prior.rate_bits(codes).mean().item()
    dims = 3 * 32 * 32
    assert result.rate("learned").bits_per_image == pytest.approx(rate, rel=1e-6)
    assert result.total("learned") == pytest.approx(nll / math.log(2) / dims + rate / dims, rel=1e-6)
    figure = next(f for f in result.figures if f.key == "total_learned")
    assert figure.label == "total bits/dim, learned prior" and str(info.folder) in figure.prior
    assert result.source.prior == str(info.folder) and result.source.prior_digest == info.digest
    assert "| total bits/dim, learned prior " in format_table({"run": result})
    assert report.evaluation.prior_note == f"learned prior: {info.folder} (the run's own)"
    assert read_eval(report.out / "eval.json") == result


def test_no_prior_none_trained_and_other_weights(runs, tmp_path, capsys):
    args = ["--split", "val", "--prior-images", "0", "--no-anchors"]
    assert main(["eval", str(runs["with"]), "--out", str(tmp_path / "a"), "--no-prior", *args]) == 0
    assert "learned prior: not used (--no-prior)" in capsys.readouterr().out
    assert read_eval(tmp_path / "a" / "eval.json").rate("learned") is None
    assert main(["eval", str(runs["without"]), "--out", str(tmp_path / "b"), *args]) == 0
    out = capsys.readouterr().out
    assert f"none trained (train one with `depthq prior train {runs['without']}`)" in out
    assert "learned prior" not in out.split("\n\n")[0]  # no learned row in the table
    # a prior of other weights: skipped (and said) by default, refused when asked for
    assert main(["eval", str(runs["other"]), "--out", str(tmp_path / "c"), *args]) == 0
    assert "was trained on other weights" in capsys.readouterr().out
    assert read_eval(tmp_path / "c" / "eval.json").rate("learned") is None
    assert main(["eval", str(runs["with"]), "--out", str(tmp_path / "d"), "--prior", str(runs["other"] / "prior"),
                 *args]) == 2
    assert "trained on other autoencoder weights" in capsys.readouterr().err
    with pytest.raises(CorruptFileError, match="other autoencoder weights"):
        write_eval(runs["with"], EvalOptions(**VAL, anchors=False, prior=str(runs["other"] / "prior")),
                   tmp_path / "e", progress=False)


def test_anchors_round_trip_print_and_come_from_the_cache(runs, tmp_path, monkeypatch):
    options = EvalOptions(split="val", prior_images=32, batch_size=8)
    report = write_eval(runs["with"], options, tmp_path / "first", progress=False)
    result, section = report.result, report.result.anchors
    assert isinstance(section, anchor_module.AnchorSection)
    assert EvalResult.from_dict(result.to_dict()) == result == read_eval(tmp_path / "first" / "eval.json")
    # the very images that were evaluated, measured again here
    anchors = measure_anchors(report.evaluation.images.images)
    png = anchors.lossless_anchor("PNG").bits_per_dim
    table = format_table({"run": result})
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]}
    assert rows["PNG, bits/dim (one file per image)"] == f"{png:.3f}"
    for prior in ("empirical", "learned"):  # each rate in bits per pixel, read off the sweeps
        bpp = result.rate(prior).bits_per_image / (32 * 32)
        assert [p.bits_per_pixel for p in section.points if p.prior == prior] == [pytest.approx(bpp)]
        for codec in ("JPEG", "WebP"):
            assert f"at {bpp:.3f} bpp" in rows[f"{codec} PSNR (dB) at the model's rate, {prior} prior"]
    assert "## Codec anchors on the same images" in (tmp_path / "first" / "report.md").read_text()
    # a second evaluation of the same images reads the cache: nothing is measured
    monkeypatch.setattr(anchor_module, "measure_anchors", lambda *a, **k: pytest.fail("measured again"))
    again = write_eval(runs["with"], options, tmp_path / "second", progress=False).result
    assert again.anchors == section
    assert write_eval(runs["with"], EvalOptions(**VAL, anchors=False), tmp_path / "none",
                      progress=False).result.anchors is None


def test_a_rate_is_read_off_the_sweep_only_inside_it():
    images = get_dataset("photos", "test").images[:12]
    anchors = measure_anchors(images)
    webp = anchors.curve("WebP").frontier()
    low, high = webp[0].bits_per_pixel, webp[-1].bits_per_pixel
    inside = math.sqrt(low * high)
    points = tuple(anchor_module.ModelPoint(p, r, None) for p, r in
                   (("uniform", low / 2), ("empirical", inside), ("learned", high * 2)))
    section = anchor_module.AnchorSection(anchors.with_rates([p.bits_per_pixel for p in points]), points, 20.0, "k")
    rows = dict(section.table_rows())
    assert not any("uniform" in label for label in rows)  # the table compares the fitted priors' rates
    value = anchors.curve("WebP").psnr_at(inside).value
    assert rows["WebP PSNR (dB) at the model's rate, empirical prior"] == f"{value:.2f} at {inside:.3f} bpp"
    assert rows["WebP PSNR (dB) at the model's rate, learned prior"] == (
        f">= {webp[-1].psnr:.2f} at {2 * high:.3f} bpp (above its highest rate)")
    report = section.report_markdown()
    assert f"| uniform | {low / 2:.3f} | " in report and f"below its lowest rate, {low:.3f})" in report
    assert anchor_module.AnchorSection.from_dict(section.to_dict()) == section


def test_compare_evaluates_again_once_a_prior_was_trained(runs, tmp_path):
    run = save_run(tmp_path / "run", depthq.load(runs["without"]))
    options = EvalOptions(**VAL, anchors=False)
    assert compare_runs([run], tmp_path / "c1", options, progress=False).results["run"].rate("learned") is None
    model = depthq.load(run)
    save_prior(random_prior(model), run / "prior", image_size=32, image_channels=3,
               autoencoder_digest=state_digest(model))
    second = compare_runs([run], tmp_path / "c2", options, progress=False)
    assert second.results["run"].rate("learned") is not None
    assert "total bits/dim, learned prior" in second.table
    third = compare_runs([run], tmp_path / "c3", options, progress=False)  # reused now
    assert third.results["run"] == second.results["run"]
    # a file that says anchors=True but holds none (written before the section existed): evaluated again
    stale = dataclasses.replace(third.results["run"], options=dataclasses.replace(options, anchors=True))
    write_json(run / "eval-val" / "eval.json", stale.to_dict())
    fresh = compare_runs([run], tmp_path / "c4", stale.options, progress=False).results["run"]
    assert fresh.anchors is not None and fresh.rate("learned") == stale.rate("learned")


def test_the_codec_section_measures_real_files(runs, tmp_path):
    report = write_eval(runs["with"], EvalOptions(**VAL, anchors=False, codec_images=2), tmp_path / "e",
                        progress=False)
    section = report.result.codec
    m = section.measurement
    assert m.images == m.round_trips_verified == 2
    assert m.lossless_bits_per_dim > m.model_bits_per_dim  # the whole file costs more than the ideal
    assert abs(section.ratio - 1) < 0.01
    assert {r.fmt for r in section.lossy_references} == {"JPEG", "WEBP"}
    assert read_eval(report.out / "eval.json") == report.result
    table = format_table({"run": report.result})
    assert ".dqz lossless round trips bit-exact" in table and "2/2" in table
    assert "## Codec: real .dqz files" in (report.out / "report.md").read_text()
    with pytest.raises(UsageError, match="--codec needs a learned prior"):
        write_eval(runs["without"], EvalOptions(**VAL, anchors=False, codec_images=2), tmp_path / "f",
                   progress=False)


def test_non_finite_encoder_outputs_are_counted_and_reported():
    model = tiny(0)
    images = ImageSet(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8), name="noise", split="test")
    healthy = evaluate(model, images)
    assert [lv.nonfinite for lv in healthy.levels] == [0, 0]
    assert "non-finite" not in format_table({"m": healthy}) and "NaN" not in format_report(healthy)

    def poison(module, inputs):  # one position of the first image: NaN in every channel
        x = inputs[0].clone()
        x[0, :, 0, 0] = float("nan")
        return (x,)

    model.quantizers[0].register_forward_pre_hook(poison)
    result = evaluate(model, images)
    m = model.config.codebooks_per_level
    assert [lv.nonfinite for lv in result.levels] == [m, 0]  # one position, M codebooks, level 0 only
    assert EvalResult.from_dict(result.to_dict()) == result
    assert f"**Warning:** {m} encoder vectors" in format_report(result)
    assert "WARNING non-finite encoder vectors (per level)" in format_table({"m": result})
