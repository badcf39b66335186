"""Gradient estimators through a quantizer: straight-through and the rotation trick.

Both return the codes *exactly* in the forward pass (so ``decode(indices)`` reproduces
``quantized`` bit for bit); they differ only in the gradient that reaches the input.

- Straight-through (Bengio et al. 2013; VQ-VAE, van den Oord et al. 2017): q = z + sg(e - z),
  so dL/dz = dL/dq. :class:`StraightThrough` also computes the commitment loss
  mean ||z - sg(e)||^2 in the same autograd node, optionally over unmasked positions only.
- Rotation trick (Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
  ICLR 2025): q = sg(|e|/|z| R) z with R the rotation that takes z/|z| to e/|e|,

      R = I - 2 r r^T + 2 u' u^T,   u = z/|z|,  u' = e/|e|,  r = (u + u') / |u + u'|

  (spec section 8), so the gradient reaches z rotated and rescaled: dL/dz = |e|/|z| R^T dL/dq.
  :func:`rotation_trick` evaluates R z without forming R (two dot products per vector).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The gradient estimators a codebook quantizer accepts.
ESTIMATORS = ("straight_through", "rotation")


class StraightThrough(torch.autograd.Function):
    """quantized = codes (exactly) and commitment = mean((x - codes)^2), in one node.

    ``StraightThrough.apply(x, codes, mask=None)``: x and codes of the same shape (codes fp32,
    no gradient); ``mask`` None or a bool tensor broadcastable to x (e.g. (B, 1, H, W)), False
    where a position is padding. Forward returns the codes bit-for-bit in x's dtype and the
    fp32 commitment (over the unmasked elements only); backward gives
    ``grad_quantized + grad_commitment * 2 (x - codes) / n`` to x (masked elements: only
    ``grad_quantized``), i.e. the straight-through estimator ``x + sg(q - x)`` plus the
    commitment gradient, computed in the input's own layout without extra permutes.
    """

    @staticmethod
    def forward(ctx, x: Tensor, codes: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if mask is None:
            ctx.save_for_backward(x, codes)
            ctx.count = max(x.numel(), 1)
            commitment = F.mse_loss(x.float(), codes) if x.numel() else codes.new_zeros(())
        else:
            # elements per position (x.numel() / mask positions) times the unmasked positions
            count = mask.sum() * (x.numel() // max(mask.numel(), 1))
            ctx.save_for_backward(x, codes, mask, count)
            sq = torch.where(mask, (x.float() - codes).pow(2), 0.0)  # where: NaN at padding stays out
            commitment = sq.sum() / count.clamp(min=1)
        out = codes if codes.dtype == x.dtype else codes.to(x.dtype)
        return out.view_as(out), commitment

    @staticmethod
    def backward(ctx, grad_q: Tensor | None, grad_c: Tensor | None):
        grad = None
        if grad_c is not None:
            if len(ctx.saved_tensors) == 2:
                x, codes = ctx.saved_tensors
                grad = (x.float() - codes).mul_(grad_c * (2.0 / ctx.count)).to(x.dtype)
            else:
                x, codes, mask, count = ctx.saved_tensors
                scale = grad_c * 2.0 / count.clamp(min=1)
                grad = torch.where(mask, (x.float() - codes) * scale, 0.0).to(x.dtype)
        if grad_q is not None:
            grad = grad_q if grad is None else grad.add_(grad_q)
        return grad, None, None


def masked_mse(x: Tensor, codes: Tensor, mask: Tensor | None = None) -> Tensor:
    """mean ||x - sg(codes)||^2 in fp32 over the elements where ``mask`` (broadcastable to x)
    is True; 0 when there are none. Differentiable in x."""
    diff = (x.float() - codes.detach()).pow(2)
    if mask is None:
        return diff.mean() if x.numel() else diff.sum()
    count = mask.sum() * (x.numel() // max(mask.numel(), 1))
    return torch.where(mask, diff, 0.0).sum() / count.clamp(min=1)


def rotation_trick(z: Tensor, codes: Tensor) -> Tensor:
    """The rotation-trick estimator: (..., D) fp32 vectors z and their codes -> (..., D).

    Forward: ``codes`` exactly. Backward: the gradient of q = sg(|e|/|z| R) z, i.e.
    dL/dz = |e|/|z| R^T dL/dq with R = I - 2 r r^T + 2 u' u^T (module docstring). A vector
    whose rotation is undefined (z = 0, e = 0, or z not finite) falls back to the
    straight-through gradient (identity); a non-finite z gets no gradient at all. When e is
    opposite to z (u + u' = 0), r = 0 and R = I + 2 u' u^T, the reflection that takes u to u'.
    """
    finite = torch.isfinite(z).all(-1, keepdim=True)  # (..., 1)
    z = torch.where(finite, z, 0.0)  # no NaN reaches the gradient
    zd, e = z.detach(), codes.detach()
    tiny = torch.finfo(torch.float32).tiny
    z_norm = zd.norm(dim=-1, keepdim=True)  # (..., 1)
    e_norm = e.norm(dim=-1, keepdim=True)
    defined = (z_norm > 0) & (e_norm > 0) & torch.isfinite(z_norm)
    u = zd / z_norm.clamp(min=tiny)  # z/|z|
    u_e = e / e_norm.clamp(min=tiny)  # e/|e|
    r = F.normalize(u + u_e, dim=-1, eps=tiny)  # (u + u')/|u + u'|, 0 when they cancel
    scale = e_norm / z_norm.clamp(min=tiny)
    # |e|/|z| (z - 2 r (r.z) + 2 u' (u.z)) = |e|/|z| R z, linear in z with constant r, u, u'
    rotated = scale * (z - 2 * r * (r * z).sum(-1, keepdim=True) + 2 * u_e * (u * z).sum(-1, keepdim=True))
    g = torch.where(defined, rotated, z)
    # codes + (g - sg(g)): the value is the codes bit for bit (g - g = 0), the gradient dg/dz
    return codes + (g - g.detach())
