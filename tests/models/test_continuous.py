"""``model.continuous``: the ablation whose decoder reads the projections, not the codes."""

from __future__ import annotations

import pytest
import torch

from depthq.codec.coder import Codec
from depthq.errors import UsageError
from depthq.models import HierarchicalAutoencoder, preset
from depthq.prior import CodeLayout, PriorConfig, PriorModel


def _pair():
    torch.manual_seed(0)
    quantized = HierarchicalAutoencoder(preset("tiny")).eval()
    continuous = HierarchicalAutoencoder(preset("tiny", continuous=True)).eval()
    continuous.load_state_dict(quantized.state_dict())  # the same network and codebooks
    return quantized, continuous


def test_the_decoder_reads_the_projections_and_no_quantizer_loss_is_trained():
    quantized, continuous = _pair()
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    a, b = quantized(x), continuous(x)
    assert all(float(level.loss) == 0.0 for level in b.levels) and float(a.quantizer_loss) > 0
    # the top level has no level above: it sees the same input, gets the same codes, and passes on
    # its projection instead of them (the levels below are conditioned on it, so theirs differ)
    top = len(a.levels) - 1
    assert torch.equal(a.levels[top].indices, b.levels[top].indices)
    projection = continuous.bottlenecks[top].project
    assert not torch.equal(a.levels[top].quantized, b.levels[top].quantized)
    assert b.levels[top].quantized.shape == a.levels[top].quantized.shape
    assert projection.out_channels == b.levels[top].quantized.shape[1]
    # the continuous top level is the projection itself: its gradient reaches the encoder
    continuous.train()
    out = continuous(x)
    out.loss.backward()
    assert next(continuous.encoders[-1].parameters()).grad is not None
    assert float(out.quantizer_loss) == 0.0


def test_a_continuous_model_has_no_codec():
    _, continuous = _pair()
    prior = PriorModel(CodeLayout.of(continuous.config, 16), PriorConfig(dim=16, layers=1, heads=2))
    with pytest.raises(UsageError, match="no codec"):
        Codec(continuous, prior)


def test_continuous_is_a_boolean_and_round_trips_in_the_config():
    with pytest.raises(ValueError, match="model.continuous must be true or false"):
        preset("tiny", continuous="yes")
    config = preset("tiny", continuous=True)
    assert type(config).from_dict(config.to_dict()) == config
