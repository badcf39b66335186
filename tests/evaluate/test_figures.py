"""Figures that people read: every series visible, every row labelled, text as precise as the colours."""

from __future__ import annotations

import math

import pytest
import torch

from depthq.evaluate import figures
from depthq.experiments.ablation import cell_digits


def test_a_series_of_one_point_is_drawn_with_a_marker():
    series = {"train/loss": [(0, 2.0), (1, 1.5)], "val/total_uniform_bpd": [(2, 7.0)],
              "train/distortion_bpd": [(0, 8.0)]}
    fig = figures._curves_figure(series)
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    single = [line for line in lines if len(line.get_xdata()) == 1]
    assert len(single) == 2 and all(line.get_marker() not in (None, "None", "") for line in single)
    figures.plt.close(fig)


def test_the_capacity_panel_appears_with_the_validation_information():
    panels = figures.curve_panels({"val/info_fraction_l0": [(2, 0.5)], "val/info_fraction_l1": [(2, 0.25)]})
    assert panels == [("val information per position\n(fraction of the capacity M log2 K)",
                       [("val/info_fraction_l0", "level 0"), ("val/info_fraction_l1", "level 1")])]


def test_labelled_rows_write_the_labels_into_the_picture(tmp_path, monkeypatch):
    seen = {}
    real = figures.save_figure

    def spy(fig, path):
        seen["labels"] = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        return real(fig, path)

    monkeypatch.setattr(figures, "save_figure", spy)
    rows = [torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8) for _ in range(3)]
    path = figures.labelled_rows(rows, ["test originals", "DQ-AE", "VQ-VAE"], tmp_path / "r.png")
    assert path.stat().st_size > 1000 and seen["labels"] == ["test originals", "DQ-AE", "VQ-VAE"]


def test_heat_map_text_resolves_its_colour_range():
    assert cell_digits(7.102, 7.110) == 4  # a 0.008 range: 7.1020 vs 7.1100, not 7.10 twice
    assert cell_digits(7.0, 7.6) == 2
    assert cell_digits(7.0, 7.0) == 2
    assert f"{7.102:.{cell_digits(7.102, 7.110)}f}" != f"{7.110:.{cell_digits(7.102, 7.110)}f}"


def _rd_curves():
    from depthq.evaluate.compressai_schema import CodecResults

    model = CodecResults("DQ-AE", "", (0.9, 0.3, 0.6), (33.0, 28.0, 31.0), (0.99, 0.9, 0.97))
    jpeg = CodecResults("JPEG", "", (0.4, 0.8, 1.2, 1.6), (27.0, 30.0, 32.0, 33.5), (0.9, 0.95, 0.97, 1.0))
    paper = CodecResults("paper", "", (0.2, 0.5), (29.0, 32.0), ms_ssim_db_rgb=(11.0, 14.0))
    return model, jpeg, paper


def test_rd_panels_share_axes_per_metric_in_db_sorted_by_rate():
    model, jpeg, paper = _rd_curves()
    (psnr_metric, psnr), (db_metric, db) = figures.rd_panels([model, jpeg, paper])
    assert (psnr_metric, db_metric) == ("psnr-rgb", "ms-ssim-db-rgb")
    assert psnr[0] == ("DQ-AE", [0.3, 0.6, 0.9], [28.0, 31.0, 33.0], False)  # sorted by bpp, solid
    assert psnr[1][0] == "JPEG" and psnr[1][3] is True  # classical codecs dashed
    assert db[0][2] == pytest.approx([10.0, 10 * math.log10(1 / 0.03), 20.0])  # -10 log10(1 - ms-ssim)
    assert len(db[1][1]) == 3  # JPEG's MS-SSIM of 1 (infinite dB) is dropped
    assert db[2] == ("paper", [0.2, 0.5], [11.0, 14.0], False)  # published dB series as is
    assert figures.rd_panels([paper], ["ms-ssim-db-rgb"]) == [("ms-ssim-db-rgb", [db[2]])]


def test_rd_curves_draws_every_curve_and_reads_compressai_files(tmp_path, monkeypatch):
    model, jpeg, paper = _rd_curves()
    published = paper.write(tmp_path / "paper.json")
    seen = {}
    real = figures.save_figure

    def spy(fig, path):
        seen["axes"] = [(ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()]) for ax in fig.axes]
        return real(fig, path)

    monkeypatch.setattr(figures, "save_figure", spy)
    path = figures.rd_curves([model, jpeg, published], tmp_path / "rd.png", title="Kodak")
    assert path.stat().st_size > 5000
    assert seen["axes"] == [
        ("PSNR-RGB (dB)", ["DQ-AE", "JPEG", "paper"]),
        ("MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)", ["DQ-AE", "JPEG", "paper"]),
    ]


def test_rd_curves_refuses_unknown_metrics_and_empty_plots(tmp_path):
    model, _, paper = _rd_curves()
    with pytest.raises(ValueError, match="metrics must be among"):
        figures.rd_panels([model], ["ms-ssim"])
    with pytest.raises(ValueError, match="nothing to plot"):
        figures.rd_curves([], tmp_path / "rd.png")
