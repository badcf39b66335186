"""The learned prior: a small causal transformer over a model's codes (spec section 7).

p(z) = prod over steps s of p(step s's codes | everything before), the steps running over the
positions of ``CodeLayout`` (top level first, raster order). With ``order="joint"`` a step is a
position and predicts its M codes with M softmax heads from one state (the codes of a position are
independent given the past); with ``order="sequential"`` a step is one code (position-major, then
codebook), so each code also sees the codes of its own position before it.

Written in the style of nanoGPT (Karpathy): pre-norm blocks, ``scaled_dot_product_attention``,
and a key/value cache so that sampling and entropy coding cost one step per step, not a pass
over the whole prefix. Training and ``rate_bits`` run all steps at once (teacher forcing);
``generate`` runs them one by one, with a ``choose`` callback that picks each step's codes
(a sample, or the symbols of an entropy coder).

Shapes: layout T positions, M codebooks, K_l codes at level l; S steps (T or T*M) of W codes
(M or 1) each. A code sequence is (B, T, M) int64 (``CodeLayout.to_sequence``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthq.prior.config import PriorConfig
from depthq.prior.layout import CodeLayout

LN2 = math.log(2.0)


class KVCache:
    """Keys and values of every layer for a batch, allocated for the whole sequence.

    k, v: (layers, B, heads, S, head_dim); ``length`` steps are filled.
    """

    def __init__(
        self, layers: int, batch: int, heads: int, steps: int, head_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        shape = (layers, batch, heads, steps, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in (q, k, v))  # (B, nh, T, hs)
        if cache is None:  # all steps at once, each attending to itself and the steps before
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:  # one new step after the cached ones: its query sees every key so far
            start = cache.length
            cache.k[layer, :, :, start : start + 1] = k
            cache.v[layer, :, :, start : start + 1] = v
            y = F.scaled_dot_product_attention(q, cache.k[layer, :, :, : start + 1], cache.v[layer, :, :, : start + 1])
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.dim)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.dim)
        hidden = config.mlp_ratio * config.dim
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim), nn.Dropout(config.dropout)
        )

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class PriorModel(nn.Module):
    """An autoregressive prior over the codes of one ``CodeLayout``.

    Example::

        layout = CodeLayout.of(model.config, 32)
        prior = PriorModel(layout, PriorConfig())
        bits = prior.rate_bits(model.encode(x))      # (B,) -log2 p(z), teacher-forced
        codes = prior.sample(16)                     # per level (16, M, h_l, w_l), bottom first
    """

    step_offsets: Tensor  # buffers set in __init__
    step_codebook: Tensor

    def __init__(self, layout: CodeLayout, config: PriorConfig) -> None:
        super().__init__()
        if not isinstance(layout, CodeLayout) or not isinstance(config, PriorConfig):
            raise TypeError(
                f"expected a CodeLayout and a PriorConfig, got {type(layout).__name__}, {type(config).__name__}"
            )
        self.layout, self.config = layout, config
        m, t = layout.codebooks, layout.total_positions
        joint = config.order == "joint"
        self.width = m if joint else 1  # W: codes per step
        self.steps = t if joint else t * m  # S
        # the code (level l, codebook j, value k) is row offsets[l, j] + k of one embedding table
        # bookkeeping on the CPU, explicitly: the model is also built under a meta device context
        # (``depthq.io.build_for_state``) and these values are read back below
        sizes = torch.tensor(layout.codebook_sizes, device="cpu").repeat_interleave(m)  # (L*M,) level-major
        offsets = (torch.cumsum(sizes, 0) - sizes).view(layout.levels, m)  # (L, M)
        level = layout.level_of_position()  # (T,)
        if joint:
            step_level, step_offsets = level, offsets[level]  # (S,), (S, W=M)
            step_codebook = torch.zeros(t, dtype=torch.int64, device="cpu")
        else:
            step_level = level.repeat_interleave(m)  # (S,)
            step_codebook = torch.arange(m, device="cpu").repeat(t)
            step_offsets = offsets[step_level, step_codebook].unsqueeze(1)  # (S, 1)
        self.register_buffer("step_offsets", step_offsets, persistent=False)
        self.register_buffer("step_codebook", step_codebook, persistent=False)
        # steps of one level are contiguous: level l owns steps [start, end)
        self._step_level = step_level.tolist()
        self._step_codebook = step_codebook.tolist()
        self._spans = {}
        for lv in layout.order:
            steps = (step_level == lv).nonzero().flatten()
            self._spans[lv] = (int(steps[0]), int(steps[-1]) + 1)

        d = config.dim
        self.code_emb = nn.Embedding(int(sizes.sum()), d)
        self.pos_emb = nn.Embedding(self.steps, d)
        self.start = nn.Parameter(torch.zeros(d))  # the input of step 0
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, m * k) for k in layout.codebook_sizes)  # per level
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 init; residual projections scaled by 1/sqrt(2 * layers); the output heads start at
        zero, so an untrained prior is the uniform prior (log2 K bits per code)."""
        for name, p in self.named_parameters():
            if name.endswith("bias") or ".ln_" in name or name.startswith("ln_f") or name == "start":
                continue
            std = (
                0.02 / math.sqrt(2 * self.config.layers)
                if name.endswith(("attn.proj.weight", "mlp.2.weight"))
                else 0.02
            )
            nn.init.normal_(p, mean=0.0, std=std)
        for head in self.heads:
            linear = cast(nn.Linear, head)  # the heads are nn.Linear (built in __init__)
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    # -- teacher forcing ------------------------------------------------------------------------

    def _steps_of(self, sequence: Tensor) -> Tensor:
        """(B, T, M) code sequence -> (B, S, W) codes per step."""
        return sequence.reshape(sequence.shape[0], self.steps, self.width)

    def _embed(self, step_codes: Tensor, first: int) -> Tensor:
        """Codes of steps [first, first + n) (B, n, W) -> their embeddings (B, n, d)."""
        ids = step_codes + self.step_offsets[first : first + step_codes.shape[1]]
        return self.code_emb(ids).sum(2)

    def _level_logits(self, h: Tensor, level: int, first: int) -> Tensor:
        """States of steps [first, first + n) of ``level`` (B, n, d) -> logits (B, n, W, K_l)."""
        b, n, _ = h.shape
        k = self.layout.codebook_sizes[level]
        logits = self.heads[level](h).view(b, n, self.layout.codebooks, k)
        if self.width == 1:  # sequential: each step predicts one codebook's code
            index = self.step_codebook[first : first + n].view(1, n, 1, 1).expand(b, n, 1, k)
            logits = logits.gather(2, index)
        return logits

    def forward(self, sequence: Tensor) -> Tensor:
        """-log p(z) in nats per image, all steps at once: (B, T, M) int64 -> (B,) fp32."""
        step_codes = self._steps_of(sequence)  # (B, S, W)
        b = step_codes.shape[0]
        inputs = torch.cat([self.start.expand(b, 1, -1), self._embed(step_codes[:, :-1], 0)], 1)
        x = self.drop(inputs + self.pos_emb.weight)  # (B, S, d)
        for block in self.blocks:
            x = block(x)
        h = self.ln_f(x)
        nll = h.new_zeros(b, dtype=torch.float32)
        for level, (first, end) in self._spans.items():
            logits = self._level_logits(h[:, first:end], level, first).float()  # (B, n, W, K)
            targets = step_codes[:, first:end]  # (B, n, W)
            ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none")
            nll = nll + ce.view(b, -1).sum(1)
        return nll

    @torch.no_grad()
    def rate_bits(self, codes: Sequence[Tensor]) -> Tensor:
        """-log2 p(z) per image under this prior: per-level codes (B, M, h_l, w_l), bottom first
        -> (B,) float64 bits. One teacher-forced pass in fp32 (eval mode, autocast off): the rate
        that the ``total bits/dim, learned prior`` figure adds to the distortion."""
        self.layout.check(codes)
        training = self.training
        self.eval()
        try:
            device = self.start.device
            with torch.autocast(device.type, enabled=False):
                nll = self(self.layout.to_sequence([z.to(device) for z in codes]))
            return nll.double() / LN2
        finally:
            self.train(training)

    # -- step by step -----------------------------------------------------------------------------

    def new_cache(self, batch: int) -> KVCache:
        c = self.config
        return KVCache(c.layers, batch, c.heads, self.steps, c.dim // c.heads, self.start.device, self.start.dtype)

    def step(self, cache: KVCache, previous: Tensor | None) -> Tensor:
        """The next step's logits given the codes chosen at the step before.

        Args:
            cache: from ``new_cache``; ``cache.length`` steps done so far.
            previous: (B, W) int64 codes of step ``cache.length - 1``; None at the first step.

        Returns:
            (B, W, K_l) fp32 logits of step ``cache.length`` (before this call), level l.
        """
        s = cache.length
        if s >= self.steps:
            raise ValueError(f"all {self.steps} steps are done")
        b = cache.k.shape[1]
        if s == 0:
            x = self.start.expand(b, 1, -1)
        elif previous is None:
            raise ValueError(f"step {s} needs the codes of step {s - 1} (previous), got None")
        else:
            x = self._embed(previous.view(b, 1, self.width), s - 1)
        x = x + self.pos_emb.weight[s]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        cache.length += 1
        return self._level_logits(self.ln_f(x), self._step_level[s], s)[:, 0].float()

    def step_level(self, step: int) -> int:
        """The hierarchy level whose codes step ``step`` predicts."""
        return self._step_level[step]

    @torch.no_grad()
    def generate(self, batch: int, choose: Callable[[int, Tensor], Tensor]) -> Tensor:
        """Run every step with the cache; ``choose(step, logits (B, W, K)) -> (B, W) int64``
        picks the codes of each step (a sample, or an entropy coder's symbols). Returns the
        chosen code sequence (B, T, M)."""
        cache = self.new_cache(batch)
        chosen = torch.empty(batch, self.steps, self.width, dtype=torch.int64, device=self.start.device)
        previous = None
        for s in range(self.steps):
            previous = choose(s, self.step(cache, previous))
            chosen[:, s] = previous
        return chosen.view(batch, self.layout.total_positions, self.layout.codebooks)

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> list[Tensor]:
        """``n`` code sets drawn from the prior: per level (n, M, h_l, w_l) int64, bottom first.

        ``temperature`` divides the logits (1: the prior itself; lower: more probable codes).
        The generator, if given, must live on the prior's device.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        training = self.training
        self.eval()

        def draw(step: int, logits: Tensor) -> Tensor:
            probs = torch.softmax(logits / temperature, -1)  # (B, W, K)
            return torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:2])

        try:
            with torch.autocast(self.start.device.type, enabled=False):
                return self.layout.from_sequence(self.generate(n, draw))
        finally:
            self.train(training)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
