"""The typed evaluation: every figure once, against brute force; JSON round trips and schema checks."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import pytest
import torch

from depthq.data import ImageSet
from depthq.errors import SchemaError
from depthq.evaluate import EmpiricalPrior, EvalOptions, EvalResult, Evaluator, evaluate
from depthq.evaluate.quality import colour_bias
from depthq.evaluate.report import format_table
from depthq.evaluate.result import SCHEMA_VERSION, register_section
from depthq.models import HierarchicalAutoencoder, preset


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(preset("tiny")).eval()
    images = ImageSet(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8), name="noise", split="test")
    return model, images


def _plugin(counter: Counter, n: int) -> float:
    return -sum(c / n * math.log(c / n) for c in counter.values())


@pytest.mark.parametrize("correction", ["none", "miller-madow"])
def test_every_figure_matches_brute_force(setup, correction):
    model, images = setup
    prior = EmpiricalPrior.fit([torch.ones(2, 16), torch.arange(32.0).view(2, 16)], description="test counts")
    result = evaluate(model, images, EvalOptions(batch_size=5, correction=correction), priors=[prior])
    x = images.images
    with torch.no_grad():
        out = model(x)
        recon = model.head.mean(out.params).double()
        nll = model.head.nll(out.params, x).double().sum().item()
    dims = 3 * 32 * 32
    assert result.images == 12 and result.dims == dims and result.data == "noise"
    assert result.mse == pytest.approx(((recon - x.double()) ** 2).mean().item())
    assert result.psnr == pytest.approx(10 * math.log10(255**2 / result.mse))
    assert result.distortion == pytest.approx(nll / 12 / dims / math.log(2))
    assert result.rate("uniform").bits_per_image == pytest.approx(16 * 16 * 2 * 4 + 8 * 8 * 2 * 4)
    assert result.rate("empirical").bits_per_image == pytest.approx(prior.rate_bits(out.indices).mean().item())
    assert result.rate("empirical").description == "test counts"
    assert result.total("empirical") == pytest.approx(result.distortion + result.rate_bpd("empirical"))
    assert result.selection == result.total("uniform")
    for level, z in zip(result.levels, out.indices):
        b, m, h, w = z.shape
        tuples = Counter(map(tuple, z.permute(0, 2, 3, 1).reshape(-1, m).tolist()))
        n = b * h * w
        joint = _plugin(tuples, n)
        marginals = [Counter(z[:, i].reshape(-1).tolist()) for i in range(m)]
        entropies = [_plugin(c, n) for c in marginals]
        if correction == "miller-madow":
            joint += (len(tuples) - 1) / (2 * n)
            entropies = [e + (len(c) - 1) / (2 * n) for e, c in zip(entropies, marginals)]
        assert level.samples == n and level.positions == h * w and level.codebooks == m
        assert level.joint_entropy == pytest.approx(joint)  # the effective information, in nats
        assert level.information_bits == pytest.approx(joint / math.log(2))
        assert list(level.entropies) == pytest.approx(entropies)
        assert list(level.perplexities) == pytest.approx([math.exp(e) for e in entropies])
        assert level.total_correlation == pytest.approx(sum(entropies) - joint)
        assert level.capacity_bits == m * math.log2(16)
        assert level.information_cap_bits == pytest.approx(math.log2(n))
        assert list(level.used_fractions) == pytest.approx([len(c) / 16 for c in marginals])
        assert list(level.dead_codes) == [16 - len(c) for c in marginals]


def test_the_estimator_is_applied_once_and_diagnostics_are_optional(setup):
    model, images = setup
    light = evaluate(model, images, EvalOptions(diagnostics=False))
    full = evaluate(model, images, EvalOptions(diagnostics=True))
    for a, b in zip(light.levels, full.levels):
        assert a.entropies == b.entropies and a.joint_entropy == b.joint_entropy
        assert a.mutual_information is None and a.entropy_map is None and a.mean_offdiagonal_mi is None
        assert b.mutual_information is not None and len(b.entropy_map) == 2


def test_a_result_round_trips_through_json_and_refuses_other_schemas(setup):
    model, images = setup
    result = evaluate(model, images)
    text = json.dumps(result.to_dict())
    assert EvalResult.from_dict(json.loads(text)) == result
    data = json.loads(text)
    with pytest.raises(SchemaError, match="newer than this depthq reads"):
        EvalResult.from_dict({**data, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaError, match="written by depthq 0.1"):
        EvalResult.from_dict({k: v for k, v in data.items() if k not in ("schema", "schema_version")})
    renamed = {**{k: v for k, v in data.items() if k != "psnr"}, "psnr_db": data["psnr"]}
    with pytest.raises(SchemaError, match=r"unknown field\(s\) \['psnr_db'\]"):
        EvalResult.from_dict(renamed)
    level = {k: v for k, v in data["levels"][0].items() if k != "joint_entropy"}
    with pytest.raises(SchemaError, match=r"missing field\(s\) \['joint_entropy'\]"):
        EvalResult.from_dict({**data, "levels": [level]})


def test_a_figure_that_does_not_apply_is_decided_by_type(setup):
    model, images = setup
    result = evaluate(model, images)
    no_likelihood = dataclasses.replace(result, likelihood=None)
    one_codebook = dataclasses.replace(result, levels=tuple(
        dataclasses.replace(lv, codebooks=1, entropies=lv.entropies[:1], perplexities=lv.perplexities[:1],
                            used_fractions=lv.used_fractions[:1], dead_codes=lv.dead_codes[:1],
                            mutual_information=None) for lv in result.levels))
    table = format_table({"dq": result, "mse": no_likelihood, "vq": one_codebook})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()[2:]}
    assert rows["total bits/dim, uniform prior"][1] == "n/a (no likelihood)"
    assert rows["total bits/dim, empirical prior"][0] == "n/a (no prior)"  # none was fitted
    assert rows["mean off-diagonal MI (nats, per level)"][2] == "n/a (M=1) / n/a (M=1)"
    assert no_likelihood.selection == result.mse and no_likelihood.figures[0].key == "rate_uniform"
    assert one_codebook.levels[0].total_correlation is None
    with pytest.raises(ValueError, match="unknown prior 'emprical'"):  # a typo is not "not measured"
        result.total("emprical")
    with pytest.raises(AttributeError):  # a renamed field is an error, not an empty cell
        format_table({"x": result}, [("psnr", [f"{result.psnr_db}"])])


class Anchors:
    """A stand-in for a section added by another module (codec anchors)."""

    def __init__(self, png: float) -> None:
        self.png = png

    def to_dict(self) -> dict:
        return {"png_bpd": self.png}

    @classmethod
    def from_dict(cls, values) -> Anchors:
        return cls(values["png_bpd"])

    def table_rows(self) -> list[tuple[str, str]]:
        return [("PNG bits/dim (lossless anchor)", f"{self.png:.2f}")]

    def report_markdown(self) -> str:
        return f"PNG: {self.png:.2f} bits/dim"

    def __eq__(self, other) -> bool:
        return isinstance(other, Anchors) and other.png == self.png


def test_sections_of_other_modules_print_and_round_trip(setup, monkeypatch):
    from depthq.evaluate import sections as sections_module

    model, images = setup
    result = evaluate(model, images).with_sections(anchors=Anchors(4.78))
    monkeypatch.setattr(sections_module, "_SECTION_READERS", {})
    register_section("anchors", Anchors.from_dict)
    assert EvalResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    table = format_table({"with": result, "without": dataclasses.replace(result, anchors=None)})
    row = next(line for line in table.splitlines() if "PNG bits/dim (lossless anchor)" in line)
    assert "4.78" in row and "n/a (not measured)" in row


def test_options_are_validated_and_compared_on_what_changes_figures():
    with pytest.raises(ValueError, match="correction must be one of"):
        EvalOptions(correction="jackknife")
    with pytest.raises(ValueError, match="prior_images must be an int >= 0"):
        EvalOptions(prior_images=-1)
    assert EvalOptions(batch_size=7, device="cuda").same_figures(EvalOptions())
    assert not EvalOptions(split="val").same_figures(EvalOptions())


def test_the_evaluator_refuses_an_empty_evaluation(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="no images were evaluated"):
        Evaluator(model, EvalOptions()).result(data="x")


def test_the_colour_bias_is_that_of_the_reconstructions_and_round_trips(setup):
    model, images = setup
    result = evaluate(model, images)
    with torch.no_grad():
        recon = model.head.mean(model(images.images).params)
    expected = colour_bias(images.images, recon)
    assert result.colour_bias == pytest.approx(expected.mean_abs)
    assert result.colour_shift == pytest.approx(expected.mean)
    assert EvalResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    # results written before the fields existed still read, without them
    old = result.to_dict()
    del old["colour_bias"], old["colour_shift"]
    assert EvalResult.from_dict(old).colour_bias is None
    row = next(line for line in format_table({"a": result}).splitlines() if line.startswith("| colour bias"))
    assert " / ".join(f"{v:.1f}" for v in expected.mean_abs) in row
