"""DQ-AE, the hierarchical autoencoder of the paper, and its VQ-VAE baseline.

Fostiropoulos & Itti (CVPR 2022), section 4.3, wired as the official code (spec section 3):

- bottom-up: encoders produce one encoding per level (level 0 = finest, at image/stride/2^(c-1)
  with c coder blocks; each level above halves the resolution);
- top-down: the top encoding is projected (1x1) and quantized; each lower level concatenates a
  decoded (2x upsampled) version of the quantized level above with its own encoding, projects
  and quantizes it. Every level has its own quantizer with its own codebook size K;
- the final decoder takes every level's quantized map, each upsampled to image/stride, and
  outputs the parameters of p(x|z) for the likelihood head.

A VQ-VAE and a DQ-AE built from one ``ModelConfig`` differ only inside their ``Bottleneck``s.

Shapes for the official config at 32x32 (stride 2, 2 coder blocks, 3 levels, M=5, D=64)::

    x (B, 3, 32, 32) uint8 -> encodings (B, 256, 8, 8), (B, 256, 4, 4), (B, 256, 2, 2)
    quantized maps (B, 320, 8, 8), (B, 320, 4, 4), (B, 320, 2, 2); indices (B, 5, h, w) each
    upsampled (B, 256, 16, 16) x 3 -> decoder -> params (B, 100, 32, 32) for dmol
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthq.models.blocks import Decoder, Encoder
from depthq.models.config import ModelConfig
from depthq.models.heads import make_head, normalise
from depthq.quantize import DepthwiseQuantizer, QuantizerOutput


class _QuantizerOptions(TypedDict):
    """The keywords a bottleneck passes to its ``DepthwiseQuantizer``."""

    beta: float
    decay: float
    learning: str
    dead_code_threshold: float
    kmeans_init: bool
    search: str


class Bottleneck(nn.Module):
    """A level's 1x1 projection and quantizer: (B, C_in, h, w) -> M*D channels of codes.

    - "dq": project to M*D channels, M codebooks on the M channel slices;
    - "vq": project to M*D channels, one codebook of M*D-dimensional codes;
    - "coupled": project to D channels, M codebooks all reading those D channels.
    """

    def __init__(self, in_channels: int, codebook_size: int, config: ModelConfig) -> None:
        super().__init__()
        m, d = config.num_codebooks, config.code_dim
        kwargs = _QuantizerOptions(
            beta=config.commitment_weight,
            decay=config.decay,
            learning=config.learning,
            dead_code_threshold=config.dead_code_threshold,
            kmeans_init=config.kmeans_init,
            search=config.search,
        )
        if config.quantizer == "dq":
            self.project = nn.Conv2d(in_channels, m * d, 1)
            self.quantizer = DepthwiseQuantizer(m, codebook_size, d, **kwargs)
        elif config.quantizer == "vq":
            self.project = nn.Conv2d(in_channels, m * d, 1)
            self.quantizer = DepthwiseQuantizer.vq(codebook_size, m * d, **kwargs)
        else:  # coupled
            self.project = nn.Conv2d(in_channels, d, 1)
            self.quantizer = DepthwiseQuantizer.coupled_baseline(m, codebook_size, d, **kwargs)

        self.continuous = config.continuous

    def forward(self, h: Tensor) -> QuantizerOutput:
        z = self.project(h)
        out = self.quantizer(z)
        if not self.continuous:
            return out
        # the ablation: the projection itself goes on; the codes are only counted (their losses
        # are measured, detached, and not trained on)
        return dataclasses.replace(
            out,
            quantized=z,
            loss=torch.zeros((), device=z.device),
            commitment=out.commitment.detach(),
            codebook_loss=out.codebook_loss.detach(),
        )


@dataclass
class AutoencoderOutput:
    """What a forward pass returns.

    Attributes:
        params: (B, P, H, W) parameters of p(x|z) for the head.
        levels: each level's quantizer output, bottom (0) to top.
        recon_loss: the head's training loss (nats per dim for likelihood heads, MSE for mse).
        quantizer_loss: sum over levels of the quantizers' losses (beta * commitment, ...).
        loss: recon_loss + quantizer_loss (+ ``mse_weight`` times the squared error of the
            head's expected image), the training objective.
    """

    params: Tensor
    levels: list[QuantizerOutput]
    recon_loss: Tensor
    quantizer_loss: Tensor
    loss: Tensor

    @property
    def indices(self) -> list[Tensor]:
        """Codes of each level, bottom to top: (B, M, h_l, w_l) int64 (M=1 for vq)."""
        return [level.indices for level in self.levels]


class HierarchicalAutoencoder(nn.Module):
    """DQ-AE (``quantizer="dq"``), VQ-VAE (``"vq"``) or the coupled baseline.

    Example::

        model = HierarchicalAutoencoder(preset("tiny"))
        x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        out = model(x)                   # out.loss to minimise; out.indices per level
        codes = model.encode(x)          # [(4, 2, 16, 16), (4, 2, 8, 8)]
        image = model.reconstruct(codes) # (4, 3, 32, 32) uint8, the mean of p(x|z)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"expected a ModelConfig, got {type(config).__name__}")
        self.config = c = config
        n_levels, ch = c.num_levels, c.channels
        coder = dict(res_blocks=c.res_blocks, res_channels=c.res_channels)
        self.head = make_head(c.head, c.image_channels, mixtures=c.mixtures)

        # bottom-up: level 0 stacks the coder blocks, each level above halves the resolution
        bottom = [Encoder(c.image_channels, ch, stride=c.stride, **coder)]
        bottom += [Encoder(ch, ch, stride=2, **coder) for _ in range(c.coder_blocks - 1)]
        self.encoders = nn.ModuleList(
            [nn.Sequential(*bottom)] + [Encoder(ch, ch, stride=2, **coder) for _ in range(n_levels - 1)]
        )
        # top-down: conditioners[l] decodes quantized level l+1 to level l's resolution
        q_ch = c.bottleneck_channels
        self.conditioners = nn.ModuleList(Decoder(q_ch, ch, ch, stride=2, **coder) for _ in range(n_levels - 1))
        # upsamplers[l]: quantized level l -> (B, ch, H/stride, W/stride)
        self.upsamplers = nn.ModuleList(self._upsampler(level) for level in range(n_levels))
        self.decoder = nn.Sequential(
            Decoder(ch * n_levels, ch, ch, stride=c.stride, **coder),
            Decoder(ch, ch, ch, stride=1, **coder),
            nn.Conv2d(ch, self.head.param_channels(c.image_channels), 3, padding=1),
        )
        # Quantizers last and on a forked RNG: a DQ-AE and a VQ-VAE built from one config under
        # one seed get identical weights everywhere outside their bottlenecks.
        with torch.random.fork_rng(devices=[]):
            self.bottlenecks = nn.ModuleList(
                Bottleneck(ch if level == n_levels - 1 else 2 * ch, k, c) for level, k in enumerate(c.codebook_sizes)
            )

    def _upsampler(self, level: int) -> nn.Module:
        """Level ``level``'s quantized map up to image/stride, as in the official code.

        The factor is 2^(level + c - 1) for c coder blocks: up to c learned stride-2 decoders,
        the rest nearest-neighbour upsampling before them.
        """
        c = self.config
        coder = dict(res_blocks=c.res_blocks, res_channels=c.res_channels)
        doublings = level + c.coder_blocks - 1
        learned = min(doublings, c.coder_blocks)
        layers: list[nn.Module] = []
        if doublings > learned:
            layers.append(nn.Upsample(scale_factor=2 ** (doublings - learned), mode="nearest"))
        in_ch = c.bottleneck_channels
        for _ in range(max(learned, 1)):
            layers.append(Decoder(in_ch, c.channels, c.channels, stride=2 if learned else 1, **coder))
            in_ch = c.channels
        return nn.Sequential(*layers)

    # -- the two halves, shared by forward / encode / decode ---------------------------------

    def _check_input(self, x: Tensor) -> None:
        c = self.config
        if x.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels 0..255 (the model normalises them), got {x.dtype}")
        if x.dim() != 4 or x.shape[1] != c.image_channels:
            raise ValueError(f"expected images (B, {c.image_channels}, H, W), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"expected at least one image, got an empty batch of shape {tuple(x.shape)}")
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"expected square images, got {x.shape[2]}x{x.shape[3]}")
        c.check_image_size(x.shape[2])

    def _quantize_levels(self, x: Tensor) -> list[QuantizerOutput]:
        """Encode bottom-up, quantize top-down. Returns each level's output, bottom to top."""
        encodings = []
        h = normalise(x).to(self.dtype)  # fp32 from the pixels; the network's own dtype after .half()
        for encoder in self.encoders:
            h = encoder(h)
            encodings.append(h)
        outputs: list[QuantizerOutput] = [None] * len(encodings)  # type: ignore[list-item]
        above = None
        for level in reversed(range(len(encodings))):
            h = encodings[level]
            if above is not None:  # condition on the decoded quantized level above
                h = torch.cat([self.conditioners[level](above), h], 1)
            outputs[level] = self.bottlenecks[level](h)
            above = outputs[level].quantized
        return outputs

    def _decode_maps(self, maps: Sequence[Tensor | None]) -> Tensor:
        """Quantized maps (bottom to top; None = level left out) -> likelihood parameters."""
        # codes come back fp32 (the codebooks stay fp32 whatever the model's dtype)
        ups = [up(q.to(self.dtype)) if q is not None else None for up, q in zip(self.upsamplers, maps)]
        ref = next((u for u in ups if u is not None), None)
        if ref is None:
            raise ValueError("decode needs at least one level's codes")
        # a level left out contributes zeros (the paper's Fig. 4 hierarchy inspection)
        filled = [u if u is not None else torch.zeros_like(ref) for u in ups]
        return self.decoder(torch.cat(filled, 1))

    # -- public API ----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> AutoencoderOutput:
        """x: uint8 (B, C, H, W) -> params, per-level codes and losses."""
        self._check_input(x)
        levels = self._quantize_levels(x)
        params = self._decode_maps([level.quantized for level in levels])
        recon = self.head.loss(params, x)
        quantizer_loss = torch.stack([level.loss for level in levels]).sum()
        loss = recon + quantizer_loss
        if self.config.mse_weight > 0 and self.head.has_likelihood:
            loss = loss + self.config.mse_weight * F.mse_loss(self.head.expected(params), normalise(x))
        return AutoencoderOutput(params, levels, recon, quantizer_loss, loss)

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[Tensor]:
        """uint8 images -> codes of each level, bottom to top (no codebook update)."""
        self._check_input(x)
        training = self.training
        self.eval()
        try:
            return [out.indices for out in self._quantize_levels(x)]
        finally:
            self.train(training)

    @torch.no_grad()
    def decode(self, codes: Sequence[Tensor | None]) -> Tensor:
        """Codes of each level (bottom to top; None zeroes a level) -> likelihood params."""
        if len(codes) != len(self.bottlenecks):
            raise ValueError(f"expected codes for {len(self.bottlenecks)} levels, got {len(codes)}")
        maps = [q.decode(z) if z is not None else None for q, z in zip(self.quantizers, codes)]
        return self._decode_maps(maps)

    @torch.no_grad()
    def reconstruct(
        self, codes: Sequence[Tensor | None], kind: str = "mean", generator: torch.Generator | None = None
    ) -> Tensor:
        """Codes -> uint8 image from p(x|z): its ``"mean"`` (the default, used for MSE/PSNR and
        pictures), its ``"mode"``, or a ``"sample"``."""
        params = self.decode(codes)
        if kind == "mean":
            return self.head.mean(params)
        if kind == "mode":
            return self.head.mode(params)
        if kind == "sample":
            return self.head.sample(params, generator)
        raise ValueError(f"kind must be 'mean', 'mode' or 'sample', got {kind!r}")

    def decode_levels(self, codes: Sequence[Tensor], keep: Sequence[int]) -> Tensor:
        """uint8 reconstruction from only the levels in ``keep``, the others zeroed (Fig. 4)."""
        return self.reconstruct([z if i in keep else None for i, z in enumerate(codes)])

    @property
    def dtype(self) -> torch.dtype:
        """The convolutions' dtype: fp32, or what ``.half()`` / ``.to(torch.bfloat16)`` made it
        (the quantizers' codebooks and the heads' arithmetic stay fp32 either way)."""
        return cast(nn.Conv2d, self.decoder[-1]).weight.dtype  # the last layer is the output convolution

    @property
    def quantizers(self) -> list[DepthwiseQuantizer]:
        """Each level's quantizer, bottom to top."""
        return [cast(Bottleneck, b).quantizer for b in self.bottlenecks]  # the ModuleList holds Bottlenecks

    def num_parameters(self) -> int:
        """Trainable parameters (codebooks are buffers with EMA learning and not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
