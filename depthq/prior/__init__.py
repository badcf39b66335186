"""A learned prior over a trained autoencoder's codes (spec section 7).

- ``CodeLayout``: where the codes of one image sit in the prior's sequence (top level first).
- ``PriorConfig`` / ``PriorTrainConfig``: the transformer and its training, validated.
- ``PriorModel``: the causal transformer; ``rate_bits(codes)`` is -log2 p(z) per image
  (teacher-forced), ``sample(n)`` draws codes, ``step``/``generate`` run it with a KV cache.
- ``load_prior(run_dir, model=...)`` -> (PriorModel, PriorInfo); ``train_prior`` trains one.

Example::

    model = depthq.load("runs/demo")
    prior, info = load_prior("runs/demo", model=model)
    bits = prior.rate_bits(model.encode(x))          # (B,) bits per image
    total_bpd = (model.head.nll(model.decode(model.encode(x)), x) / math.log(2) + bits) / info.dims
"""

from typing import TYPE_CHECKING, Any

from depthq.prior.config import PriorConfig, PriorRunConfig, PriorTrainConfig, load_prior_config
from depthq.prior.io import PriorInfo, load_prior, save_prior, state_digest
from depthq.prior.layout import CodeLayout
from depthq.prior.model import PriorModel

if TYPE_CHECKING:
    from depthq.prior.train import train_prior


def __getattr__(name: str) -> Any:
    if name == "train_prior":  # needs lightning: imported on first use
        from depthq.prior.train import train_prior

        return train_prior
    raise AttributeError(f"module 'depthq.prior' has no attribute {name!r}")


__all__ = [
    "CodeLayout",
    "PriorConfig",
    "PriorInfo",
    "PriorModel",
    "PriorRunConfig",
    "PriorTrainConfig",
    "load_prior",
    "load_prior_config",
    "save_prior",
    "state_digest",
    "train_prior",
]
