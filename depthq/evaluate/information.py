"""Information diagnostics of discrete codes: entropy, mutual information, total correlation.

Fostiropoulos & Itti, "Implicit Feature Decoupling with Depthwise Quantization", CVPR 2022,
sections 4.2 and 5.2 (Eq. 7, Fig. 3) and shared/spec.md section 5. Everything is estimated
from frequency counts, accumulated over a data set by :class:`CodeStatistics` (streaming,
mergeable, no N x K one-hot tensors) and turned into nats by pure functions on counts.

Estimators and their bias. The plug-in entropy H^ = -sum p^ log p^ is biased *down*:
E[H^] ~ H - (m - 1) / (2N) for m occupied bins and N samples (Miller 1955). Miller-Madow adds
that term back. For the mutual information I = H_i + H_j - H_ij the biases do not cancel: the
joint histogram has more occupied bins, so the plug-in MI is biased *up*; for independent codes
E[I^] ~ (m_i - 1)(m_j - 1) / (2N) nats (Panzeri & Treves 1996), see :func:`mi_bias`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

CORRECTIONS = ("none", "miller-madow")
DEFAULT_MAX_ENTRIES = 2**26  # int64 counts per histogram: 512 MB


def entropy(counts: Tensor, dim: int = -1) -> Tensor:
    """Plug-in entropy in nats of the histogram(s) ``counts`` along ``dim``.

    Any shape and real dtype; empty bins add 0 and all-zero histograms have entropy 0.
    Computed in float64 (counts beyond 2^24 are not exact in fp32). (..., K) -> (...).
    """
    counts = _check_counts(counts)
    total = counts.sum(dim, keepdim=True).clamp_min(1)  # all-zero rows give p = 0, H = 0
    return torch.special.entr(counts / total).sum(dim)  # entr(p) = -p log p, entr(0) = 0


def miller_madow(counts: Tensor, dim: int = -1) -> Tensor:
    """Bias-corrected entropy: plug-in + (m - 1) / (2N), m occupied bins, N total count."""
    counts = _check_counts(counts)
    occupied = (counts > 0).sum(dim).double()
    total = counts.sum(dim)
    correction = (occupied - 1).clamp_min(0) / (2 * total.clamp_min(1))
    return entropy(counts, dim) + correction


def perplexity(counts: Tensor, dim: int = -1) -> Tensor:
    """exp(plug-in entropy): the effective number of codes in use, 1 to K."""
    return entropy(counts, dim).exp()


def mi_bias(m_i: int | Tensor, m_j: int | Tensor, n: int | Tensor) -> float | Tensor:
    """Expected plug-in MI (nats) of two *independent* variables: (m_i - 1)(m_j - 1) / (2n).

    From the first-order entropy bias -(m - 1)/(2n) applied to H_i, H_j and H_ij, with the
    joint support m_i * m_j of independent variables. Valid for n >> m_i * m_j; a plug-in MI
    within a few times this value is indistinguishable from independence.
    """
    if not torch.all(torch.as_tensor(n) > 0):
        raise ValueError(f"expected a positive sample count n, got {n}")
    return (m_i - 1) * (m_j - 1) / (2 * n)


class CodeStatistics:
    """Streaming code counts of one level, and the diagnostics computed from them.

    Feed int64 indices (B, M, H, W) in [0, K) with :meth:`update`; every position of every
    image is one sample of the M-tuple (z_1, ..., z_M). Accumulated (all int64):

    - ``marginal`` (M, K): code counts of each codebook, pooled over images and positions;
    - ``per_position`` (M, H, W, K), if ``positions``: the same per position (the entropy map);
    - ``pair`` (P, K, K), if ``pairwise``: joint histograms of the P = M(M-1)/2 pairs i < j,
      in the order of ``torch.triu_indices(M, M, 1)``;
    - ``joint_counts`` (U,), if ``joint``: counts of the U distinct M-tuples (total correlation).

    Memory guard: ``pair`` holds P*K*K and ``per_position`` M*H*W*K counts; if either exceeds
    ``max_entries`` (default 2^26, 512 MB) the constructor, resp. the first update, raises a
    ValueError (turn that statistic off or raise the budget). The tuple counts grow with the
    number of distinct tuples seen, at most min(K^M, samples), 16 bytes each. An update holds
    about 3*P*B*H*W int64 temporaries for the pairs; feed smaller batches if that is too much.

    Example::

        stats = CodeStatistics(num_codebooks=5, codebook_size=512)
        for batch in loader:
            stats.update(model(batch).indices[0])    # (B, 5, H, W) int64
        stats.entropies()                            # (5,) nats
        stats.mutual_information()                   # (5, 5) nats, entropies on the diagonal
        stats.entropy_map().mean(0)                  # (H, W) mean nats/position (Fig. 3 left)
    """

    def __init__(
        self,
        num_codebooks: int,
        codebook_size: int,
        *,
        pairwise: bool = True,
        positions: bool = True,
        joint: bool = True,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        device: torch.device | str | None = None,
    ) -> None:
        if not (isinstance(num_codebooks, int) and num_codebooks >= 1):
            raise ValueError(f"expected num_codebooks a positive int, got {num_codebooks!r}")
        if not (isinstance(codebook_size, int) and 1 <= codebook_size < 2**31):
            raise ValueError(f"expected codebook_size an int in [1, 2^31), got {codebook_size!r}")
        m, k = num_codebooks, codebook_size
        self.num_codebooks, self.codebook_size = m, k
        self.pairwise, self.positions, self.joint = pairwise, positions, joint
        self.max_entries = max_entries
        self.device = torch.device(device or "cpu")
        self.spatial_shape: tuple[int, int] | None = None  # (H, W), fixed by the first update
        self.pairs = torch.triu_indices(m, m, 1, device=self.device)  # (2, P) rows i < j
        num_pairs = self.pairs.shape[1]
        if pairwise and num_pairs * k * k > max_entries:
            raise ValueError(
                f"pairwise histograms need P*K*K = {num_pairs}*{k}*{k} = {num_pairs * k * k} "
                f"counts, above max_entries={max_entries}; pass pairwise=False or a larger "
                "max_entries"
            )
        self.marginal = torch.zeros(m, k, dtype=torch.int64, device=self.device)
        self.pair = torch.zeros(num_pairs if pairwise else 0, k, k, dtype=torch.int64, device=self.device)  # (P, K, K)
        self.per_position: Tensor | None = None  # (M, H, W, K), allocated on the first update
        # Tuple keys: key(z) = sum_m table[m, z_m]. Mixed radix (exact) when K^M < 2^62, else
        # a hash (see _hash_table); the table stays small, (M, K).
        self.hashed = k**m >= 2**62
        if self.hashed:
            self._key_table = _hash_table(m, k).to(self.device)
        else:
            radix = torch.tensor([k ** (m - 1 - i) for i in range(m)], dtype=torch.int64)
            self._key_table = (torch.arange(k).unsqueeze(0) * radix.unsqueeze(1)).to(self.device)
        self._joint_keys = torch.zeros(0, dtype=torch.int64, device=self.device)  # (U,) sorted
        self._joint_counts = torch.zeros(0, dtype=torch.int64, device=self.device)  # (U,)
        self._pending: list[tuple[Tensor, Tensor]] = []  # (keys, counts) not yet merged

    @property
    def num_samples(self) -> int:
        """Tuples (image positions) seen so far: N of every codebook."""
        return int(self.marginal[0].sum())

    @property
    def joint_counts(self) -> Tensor:
        """(U,) counts of the distinct M-tuples seen, in the order of their sorted keys."""
        self._require(self.joint, "joint")
        self._compact()
        return self._joint_counts

    # -- accumulation --------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, indices: Tensor) -> None:
        """Add a batch of codes: (B, M, H, W) integers in [0, K)."""
        z = self._check_indices(indices)
        if z.numel() == 0:
            return
        m, k = self.num_codebooks, self.codebook_size
        b, _, h, w = z.shape
        if self.spatial_shape is None:
            self._start(h, w)
        offsets = torch.arange(m, device=self.device).view(1, m, 1, 1) * k
        _accumulate(self.marginal, z + offsets)
        if self.positions:
            cells = torch.arange(m * h * w, device=self.device).view(1, m, h, w) * k
            _accumulate(self._position_counts(), z + cells)
        flat = z.transpose(0, 1).reshape(m, b * h * w)  # (M, N), one column per tuple
        if self.pairwise and self.pair.shape[0] > 0:
            num_pairs = self.pair.shape[0]
            first, second = flat[self.pairs[0]], flat[self.pairs[1]]  # (P, N) each
            base = torch.arange(num_pairs, device=self.device).unsqueeze(1) * (k * k)
            _accumulate(self.pair, base + first * k + second)
        if self.joint:
            keys = self._key_table.gather(1, flat).sum(0)  # (N,) one key per tuple
            self._pending.append(torch.unique(keys, return_counts=True))
            if sum(len(key) for key, _ in self._pending) > len(self._joint_keys):
                self._compact()  # amortised: merge once the backlog outgrows the table

    def merge(self, other: CodeStatistics) -> CodeStatistics:
        """Add ``other``'s counts to this one (e.g. from another rank); returns ``self``."""
        same = ("num_codebooks", "codebook_size", "pairwise", "positions", "joint")
        for name in same:
            if getattr(self, name) != getattr(other, name):
                raise ValueError(f"cannot merge: expected {name}={getattr(self, name)}, got {getattr(other, name)}")
        if other.spatial_shape is None:
            return self
        if self.spatial_shape is None:
            self._start(*other.spatial_shape)
        elif self.spatial_shape != other.spatial_shape:
            raise ValueError(f"cannot merge: expected (H, W) = {self.spatial_shape}, got {other.spatial_shape}")
        self.marginal += other.marginal.to(self.device)
        self.pair += other.pair.to(self.device)
        if self.positions:
            counts = self._position_counts()
            counts += other._position_counts().to(self.device)
        if self.joint:
            other._compact()
            self._pending.append((other._joint_keys.to(self.device), other._joint_counts.to(self.device)))
            self._compact()
        return self

    def state_dict(self) -> dict:
        """Counts and configuration, for ``torch.save`` and :meth:`load_state_dict`."""
        self._compact()
        return {
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "hashed": self.hashed,
            "spatial_shape": self.spatial_shape,
            "marginal": self.marginal.clone(),
            "pair": self.pair.clone(),
            "per_position": None if self.per_position is None else self.per_position.clone(),
            "joint_keys": self._joint_keys.clone(),
            "joint_counts": self._joint_counts.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Replace the counts by those of :meth:`state_dict` from a same-config instance."""
        for name in ("num_codebooks", "codebook_size", "hashed"):
            if state[name] != getattr(self, name):
                raise ValueError(f"expected {name}={getattr(self, name)}, got {state[name]}")
        has_map = state["per_position"] is not None
        if self.pair.shape != state["pair"].shape or (
            has_map != (self.positions and state["spatial_shape"] is not None)
        ):
            raise ValueError("expected a state saved with the same pairwise/positions settings")
        to = dict(dtype=torch.int64, device=self.device)
        shape = state["spatial_shape"]
        self.spatial_shape = None if shape is None else tuple(shape)
        self.marginal, self.pair = state["marginal"].to(**to), state["pair"].to(**to)
        pos = state["per_position"]
        self.per_position = None if pos is None else pos.to(**to)
        self._joint_keys = state["joint_keys"].to(**to)
        self._joint_counts = state["joint_counts"].to(**to)
        self._pending = []

    # -- results (nats) ------------------------------------------------------------------------

    def entropies(self, correction: str = "none") -> Tensor:
        """(M,) entropy of each codebook over all images and positions (Eq. 7)."""
        return _estimate(self.marginal, correction)

    def entropy_map(self, correction: str = "none") -> Tensor:
        """(M, H, W) entropy per codebook and position ("nats/pixel"); ``.mean(0)`` -> (H, W)."""
        self._require(self.positions, "positions")
        if self.per_position is None:
            raise ValueError("expected at least one update before entropy_map(), got none")
        return _estimate(self.per_position, correction)

    def mutual_information(self, correction: str = "none") -> Tensor:
        """(M, M) symmetric matrix: I(z_i; z_j) = H_i + H_j - H_ij off the diagonal, H_i on it.

        The plug-in estimate is biased up, by ~ :func:`mi_bias` for independent codes;
        Miller-Madow removes most of that bias and can then come out slightly negative.
        """
        self._require(self.pairwise, "pairwise")
        h = self.entropies(correction)  # (M,)
        k = self.codebook_size
        h_pair = _estimate(self.pair.view(-1, k * k), correction)  # (P,) joint entropies
        i, j = self.pairs
        mi = torch.diag(h)  # (M, M)
        mi[i, j] = mi[j, i] = h[i] + h[j] - h_pair
        return mi

    def mean_offdiagonal_mi(self, correction: str = "none") -> float:
        """Mean MI over the P pairs i < j (the paper's "mean score"); NaN when M = 1."""
        i, j = self.pairs
        return self.mutual_information(correction)[i, j].mean().item()

    def total_correlation(self, correction: str = "none") -> float:
        """sum_m H(z_m) - H(z_1, ..., z_M) in nats; 0 iff the codebooks are independent.

        Caveats of the estimate: (1) the joint histogram has up to K^M bins, so the plug-in
        joint entropy is biased down far more than the marginals and the total correlation is
        biased *up*, by ~ [(U - 1) - sum_m (m_m - 1)] / (2N) while N >> U (Miller-Madow removes
        this first-order term); (2) N samples occupy at most N bins, so H^(joint) <= log N and
        the estimate is at least sum_m H^(z_m) - log N: once that exceeds 0 (N < e^{sum H})
        independence cannot be detected at all. (3) When K^M >= 2^62 tuples are hashed;
        colliding tuples merge (probability about U^2 M / 2^63) and bias it up further.
        """
        return self.entropies(correction).sum().item() - self.joint_entropy(correction)

    def joint_entropy(self, correction: str = "none") -> float:
        """H(z_1, ..., z_M) in nats: the information of a whole M-tuple (a position's code).

        The plug-in estimate is at most log N for N samples (see ``total_correlation``).
        """
        return _estimate(self.joint_counts, correction).item()

    def usage(self) -> dict[str, Tensor]:
        """Per codebook (M,): ``fraction_used`` (codes seen at least once), ``dead_codes``
        (codes never seen, int64) and ``perplexity`` (exp of the plug-in entropy)."""
        used = self.marginal > 0  # (M, K)
        return {
            "fraction_used": used.double().mean(1),
            "dead_codes": (~used).sum(1),
            "perplexity": perplexity(self.marginal),
        }

    # -- helpers -------------------------------------------------------------------------------

    def _check_indices(self, indices: Tensor) -> Tensor:
        m, k = self.num_codebooks, self.codebook_size
        if not isinstance(indices, Tensor):
            raise TypeError(f"expected indices as a torch.Tensor, got {type(indices).__name__}")
        if not _is_integer(indices.dtype):
            raise ValueError(f"expected integer indices (int64), got dtype {indices.dtype}")
        if indices.dim() != 4 or indices.shape[1] != m:
            raise ValueError(f"expected indices of shape (B, M={m}, H, W), got {tuple(indices.shape)}")
        hw = tuple(indices.shape[2:])
        if self.spatial_shape is not None and hw != self.spatial_shape:
            raise ValueError(f"expected (H, W) = {self.spatial_shape} as in earlier updates, got {hw}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= k):
            raise ValueError(
                f"expected indices in [0, {k}), got values in [{int(indices.min())}, {int(indices.max())}]"
            )
        return indices.to(device=self.device, dtype=torch.int64)

    def _start(self, h: int, w: int) -> None:
        """Fix (H, W) and allocate the per-position counts, within the memory budget."""
        m, k = self.num_codebooks, self.codebook_size
        if self.positions:
            if m * h * w * k > self.max_entries:
                raise ValueError(
                    f"per-position counts need M*H*W*K = {m}*{h}*{w}*{k} = {m * h * w * k}, "
                    f"above max_entries={self.max_entries}; pass positions=False or a larger "
                    "max_entries"
                )
            self.per_position = torch.zeros(m, h, w, k, dtype=torch.int64, device=self.device)
        self.spatial_shape = (h, w)

    def _compact(self) -> None:
        """Merge pending tuple counts into the sorted (keys, counts) table."""
        if not self._pending:
            return
        keys = torch.cat([self._joint_keys] + [key for key, _ in self._pending])
        counts = torch.cat([self._joint_counts] + [count for _, count in self._pending])
        self._joint_keys, inverse = torch.unique(keys, return_inverse=True)
        self._joint_counts = torch.zeros_like(self._joint_keys).index_add_(0, inverse, counts)
        self._pending = []

    def _position_counts(self) -> Tensor:
        """``per_position``, which ``_start`` allocated (with ``positions``)."""
        if self.per_position is None:
            raise RuntimeError("the per-position counts are allocated by the first update (positions=True)")
        return self.per_position

    @staticmethod
    def _require(enabled: bool, flag: str) -> None:
        if not enabled:
            raise RuntimeError(f"this statistic needs {flag}=True; it was constructed with {flag}=False")


def _estimate(counts: Tensor, correction: str) -> Tensor:
    """Entropy along the last dim with the named correction."""
    if correction == "none":
        return entropy(counts)
    if correction == "miller-madow":
        return miller_madow(counts)
    raise ValueError(f"expected correction in {CORRECTIONS}, got {correction!r}")


def _check_counts(counts: Tensor) -> Tensor:
    """Counts as float64, rejecting negative values."""
    if not isinstance(counts, Tensor):
        raise TypeError(f"expected counts as a torch.Tensor, got {type(counts).__name__}")
    if counts.is_complex() or counts.dtype == torch.bool:
        raise ValueError(f"expected real counts, got dtype {counts.dtype}")
    if counts.numel() and counts.min() < 0:
        raise ValueError(f"expected non-negative counts, got minimum {counts.min().item()}")
    return counts.double()


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _accumulate(counts: Tensor, keys: Tensor) -> None:
    """counts.view(-1)[key] += 1 for every key, in place.

    Unlike ``bincount(minlength=counts.numel())`` this allocates nothing of the histogram's
    size, which matters when a batch is much smaller than the (P, K, K) pair histograms.
    """
    ones = torch.ones(1, dtype=counts.dtype, device=counts.device).expand(keys.numel())
    counts.view(-1).index_add_(0, keys.reshape(-1), ones)


def _hash_table(m: int, k: int, seed: int = 0x5EED) -> Tensor:
    """(M, K) random int64 entries below 2^62 / M, so that key(z) = sum_m T[m, z_m] < 2^62.

    Two distinct tuples differ at some m, where T[m, a] and T[m, b] are independent uniform
    values; so they collide with probability <= M / 2^62 (a universal hash). The entries
    come from splitmix64 of their position, identical on every machine and torch version,
    so that counts from different processes can be merged.
    """
    bits = 62 - math.ceil(math.log2(m))
    x = np.arange(m * k, dtype=np.uint64) + np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return torch.from_numpy((x >> np.uint64(64 - bits)).astype(np.int64)).view(m, k)
