"""The per-image colour bias against hand computation."""

from __future__ import annotations

import pytest
import torch

from depthq.evaluate.quality import colour_bias, per_image_colour_bias


def test_colour_bias_by_hand():
    ref = torch.full((2, 3, 2, 2), 100, dtype=torch.uint8)
    dec = ref.clone()
    dec[0, 0] += 4  # image 0: red +4 everywhere
    dec[1, 0, 0, 0] -= 8  # image 1: red -8 on one of 4 pixels: -2 on average
    dec[1, 2] -= 1  # image 1: blue -1
    assert per_image_colour_bias(ref, dec).tolist() == [[4.0, 0.0, 0.0], [-2.0, 0.0, -1.0]]
    bias = colour_bias(ref, dec)
    assert bias.mean_abs == (3.0, 0.0, 0.5) and bias.mean == (1.0, 0.0, -0.5) and bias.images == 2
    assert bias.worst() == 3.0
    assert colour_bias(ref[0], ref[0]).mean_abs == (0.0, 0.0, 0.0)


def test_colour_bias_refuses_other_shapes_and_dtypes():
    x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="of one shape"):
        colour_bias(x, x[:, :, :2])
    with pytest.raises(ValueError, match="uint8"):
        colour_bias(x, x.float())
