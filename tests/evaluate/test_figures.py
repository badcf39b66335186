"""Figures that people read: every series visible, every row labelled, text as precise as the colours."""

from __future__ import annotations

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
