"""The naive baseline: one quantizer module per codebook, looped in Python.

This mirrors the structure of the official DQ code (one EMA VQ module per codebook, each
computing full distances and a one-hot matrix, and a Python loop over them); it is what the
batched ``DepthwiseQuantizer`` is measured against. Written for the benchmarks only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NaiveVQ(nn.Module):
    """One EMA codebook over (..., D) vectors, with full (N, K) distances and a one-hot."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, eps: float = 1e-5,
                 threshold: float = 1.0) -> None:
        super().__init__()
        self.decay, self.eps, self.threshold = decay, eps, threshold
        embed = torch.randn(dim, codebook_size)
        self.register_buffer("embed", embed)  # (D, K)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = x.float().reshape(-1, x.shape[-1])  # (N, D)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed + self.embed.pow(2).sum(0, keepdim=True)
        idx = dist.argmin(1)
        onehot = F.one_hot(idx, self.embed.shape[1]).type(flat.dtype)  # (N, K)
        quantize = F.embedding(idx, self.embed.t()).view_as(x)
        if self.training:
            with torch.no_grad():
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(flat.t() @ onehot, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.embed.shape[1] * self.eps) * n
                rand = flat[torch.randint(0, flat.shape[0], (self.embed.shape[1],))].t()
                usage = (size >= self.threshold).float().unsqueeze(0)
                self.embed.copy_(usage * self.embed_avg / size.unsqueeze(0) + (1 - usage) * rand)
        diff = (quantize.detach() - x).pow(2).mean()
        return x + (quantize - x).detach(), diff, idx.view(x.shape[:-1])


class NaiveDepthwise(nn.Module):
    """M NaiveVQ modules on the M channel slices of a (B, M*D, H, W) map, looped."""

    def __init__(self, num_codebooks: int, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.quantizers = nn.ModuleList(
            NaiveVQ(code_dim, codebook_size) for _ in range(num_codebooks)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        quants, losses, ids = [], 0.0, []
        for m, quantizer in enumerate(self.quantizers):
            part = x[:, m * self.code_dim : (m + 1) * self.code_dim].permute(0, 2, 3, 1)
            q, diff, idx = quantizer(part)
            quants.append(q.permute(0, 3, 1, 2))
            losses = losses + diff
            ids.append(idx)
        return torch.cat(quants, 1), torch.stack(ids, 1), losses


class NaiveBottleneck(nn.Module):
    """One 1x1 projection and one NaiveVQ per codebook, looped, as the official DQ-AE does.

    A drop-in replacement for ``depthq.models.autoencoder.Bottleneck`` ("dq" kind): same input,
    same M*D output channels, same loss (mean commitment over the codebooks times beta).
    """

    def __init__(self, in_channels: int, codebook_size: int, num_codebooks: int, code_dim: int,
                 beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.projections = nn.ModuleList(nn.Conv2d(in_channels, code_dim, 1) for _ in range(num_codebooks))
        self.quantizers = nn.ModuleList(NaiveVQ(code_dim, codebook_size) for _ in range(num_codebooks))

    def forward(self, h: Tensor):
        from depthq.quantize import QuantizerOutput

        quants, ids, loss = [], [], 0.0
        for project, quantizer in zip(self.projections, self.quantizers):
            q, diff, idx = quantizer(project(h).permute(0, 2, 3, 1))
            quants.append(q.permute(0, 3, 1, 2))
            ids.append(idx)
            loss = loss + diff
        loss = self.beta * loss / len(self.quantizers)
        zeros = torch.zeros(len(ids), device=h.device)
        return QuantizerOutput(torch.cat(quants, 1), torch.stack(ids, 1), loss, loss, loss * 0,
                               zeros, zeros, zeros)


def naive_autoencoder(config):
    """The same network as ``HierarchicalAutoencoder(config)`` with naive bottlenecks.

    Built from the same config under the same seed, its weights outside the bottlenecks are
    identical to depthq's.
    """
    from depthq.models import HierarchicalAutoencoder

    model = HierarchicalAutoencoder(config)
    c = config
    for level, old in enumerate(model.bottlenecks):
        model.bottlenecks[level] = NaiveBottleneck(old.project.in_channels, c.codebook_sizes[level],
                                                   c.num_codebooks, c.code_dim, c.beta)
    return model
