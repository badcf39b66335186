"""Entropy coding of images with a trained autoencoder and its learned prior (spec section 7).

Lossless: the codes z of each tile under the prior, then every sub-pixel under p(x|z) in the
head's channel order (R, then G given R, then B given R and G), as 8 binary decisions read off
the head's CDF (``depthq.codec.pixels``), so a file costs -log2 p(z) - log2 p(x|z) bits plus the
header and the coder's few bytes per tile. Lossy: the codes alone; the decoder returns the mean of
p(x|z). Range coding by ``constriction``, one stream per tile. Images of any size: padded to whole
tiles by edge replication (``depthq.codec.tiling``); the padding's codes are coded (the tile needs
them), its pixels are not.

Determinism, the hard part: the decoder must see bit-identical probabilities. So

- both sides run the prior step by step with its key/value cache (``PriorModel.generate``): the
  encoder feeds the true codes, the decoder the decoded ones (equal values), through the same
  operations; never the parallel teacher-forced pass;
- every tensor computation runs at a shape that is a function of the image's tile count alone
  (``tiling.chunks``: batches of ``Codec.chunk`` tiles, the last one of the next power of two),
  and each batch's inputs are equal on both sides: its rows are the same tiles, padding rows hold
  code 0 and pixel 0, and the pixels outside the image count as 0 when later channels are
  conditioned on earlier ones. So no result depends on the caller's batching, on other images,
  or on how kernels treat the rows of a batch;
- all of it in fp32 on the CPU with autocast off and ``CODER_THREADS`` intra-op threads, the
  caller's thread setting restored afterwards;
- probabilities become integer frequencies in float64 numpy arithmetic (exactly rounded, the same
  on any machine), at least one count per symbol, so no symbol is ever impossible; constriction
  codes with those frequencies (its own rescaling is exact integer arithmetic).

Files therefore decode on the machine that wrote them and on machines with the same CPU
instruction set and torch build; elsewhere transcendental functions may round differently, and
the content checksum then rejects the file instead of returning a wrong image.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from depthq.codec.format import (
    DEFAULT_MAX_PIXELS,
    CodecError,
    Header,
    Limits,
    bytes_to_words,
    crc32,
    pack,
    size_crc,
    unpack,
    words_to_bytes,
)
from depthq.codec.pixels import code_values, pixel_cdf
from depthq.codec.tiling import Chunk, chunks, pad, place, real_mask, tiles
from depthq.errors import CorruptFileError, DataError, UsageError
from depthq.io import state_digest
from depthq.prior.layout import CodeLayout
from depthq.prior.model import PriorModel

log = logging.getLogger(__name__)

CHUNK = 64  # most tiles per batch: part of the format (with ``chunk_size``, the shapes computed at)
CHUNK_BYTES = 2**26  # the likelihood parameters of one batch stay under 64 MiB (fewer tiles for big heads)
CODER_THREADS = 1  # intra-op threads while computing coding probabilities
FREQUENCY_TOTAL = 2**24  # the resolution of the integer frequencies (constriction's default precision)
PROGRESS_TILES = 64  # images of at least this many tiles show a progress bar (when progress=None)


def frequencies(probs: Tensor) -> np.ndarray:
    """Probabilities (..., K) -> integer frequencies (N, K) float64, each >= 1, sum <= 2^24.

    ``floor(p / sum(p) * (2^24 - K)) + 1`` in float64 numpy arithmetic only (correctly rounded
    on every machine), so both sides agree given the same fp32 probabilities.
    """
    k = probs.shape[-1]
    p = probs.detach().reshape(-1, k).cpu().numpy()
    scale = (FREQUENCY_TOTAL - k) / p.sum(1, dtype=np.float64, keepdims=True)  # (N, 1)
    f = np.multiply(p, scale, dtype=np.float64)
    np.floor(f, out=f)
    f += 1.0
    return f


def prior_tile(model, prior: PriorModel) -> int:
    """The image side whose codes the prior models: the codec's tile."""
    return prior.layout.grids[0][0] * model.config.level_stride(0)


def chunk_size(param_channels: int, tile: int) -> int:
    """Tiles per batch: ``CHUNK``, halved until the likelihood parameters (param_channels, t, t)
    fp32 of a batch fit ``CHUNK_BYTES`` (at least 1)."""
    size = CHUNK
    while size > 1 and size * param_channels * tile * tile * 4 > CHUNK_BYTES:
        size //= 2
    return size


@contextmanager
def coder_threads() -> Iterator[None]:
    """Run the coder's tensor work with ``CODER_THREADS`` threads, restoring the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(CODER_THREADS)
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.set_num_threads(before)


def _constriction():
    try:
        import constriction  # the codec extra: imported when a Codec is made, so depthq imports without it
    except ImportError:  # pragma: no cover - the extra is in the test dependencies
        raise ImportError("the codec needs constriction: pip install 'depthq[codec]' (or constriction)") from None
    return constriction


def _entropy_decode(decoder, family, probs: np.ndarray, tile: int) -> np.ndarray:
    """``decoder.decode``, its failures (invalid data, a panic in the Rust coder) as CodecError."""
    try:
        return decoder.decode(family, probs)
    except BaseException as err:
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CodecError(f"corrupt file: the entropy decoder found invalid data in tile {tile} ({reason})") from None


class Codec:
    """Compresses images to ``.dqz`` bytes and back, with an autoencoder and its prior.

    Example::

        codec = Codec(model, prior)
        files = codec.compress(images)              # uint8 (N, C, H, W), or a list of (C, H, W)
        assert torch.equal(torch.stack(codec.decompress(files)), images)

    Images of any size (>= 1x1, at most ``max_pixels``) are padded to tiles of the prior's image
    size (``tile``). ``max_pixels`` bounds what a file may make ``decompress`` allocate and compute
    (``format.DEFAULT_MAX_PIXELS``); ``progress`` shows a progress bar per image (None: for images of
    ``PROGRESS_TILES`` tiles or more, on a terminal). The codec works on CPU copies of both models;
    the originals are left untouched.
    """

    def __init__(
        self,
        model,
        prior: PriorModel,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool | None = None,
        autoencoder_digest: str | None = None,
        prior_digest: str | None = None,
    ) -> None:
        if model.config.continuous:
            raise UsageError("a continuous model (model.continuous, an ablation) decodes no codes: it has no codec")
        layout = prior.layout
        tile = prior_tile(model, prior)
        if layout != CodeLayout.of(model.config, tile):
            raise CorruptFileError(
                f"the prior models codes of layout {layout}, which this autoencoder does not "
                f"produce ({CodeLayout.of(model.config, tile)})"
            )
        if progress not in (None, True, False):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        self.limits = Limits(max_pixels)
        self.progress = progress
        self.model = copy.deepcopy(model).to("cpu", torch.float32).eval()
        self.prior = copy.deepcopy(prior).to("cpu", torch.float32).eval()
        self.layout, self.tile, self.channels = layout, tile, model.config.image_channels
        self.chunk = chunk_size(self.model.head.param_channels(), tile)
        # the digests name the weights in every file (given when the caller has them already)
        self.autoencoder_id = bytes.fromhex(autoencoder_digest or state_digest(self.model))[:4]
        self.prior_id = bytes.fromhex(prior_digest or state_digest(self.prior))[:4]
        self._constriction = _constriction()
        self._family = self._constriction.stream.model.Categorical(perfect=False)
        # the prior's steps grouped by level, (first, end): a level's steps share K
        levels = [self.prior.step_level(s) for s in range(self.prior.steps)]
        bounds = [0] + [s for s in range(1, len(levels)) if levels[s] != levels[s - 1]] + [len(levels)]
        self._level_spans = list(zip(bounds[:-1], bounds[1:]))

    @property
    def max_pixels(self) -> int:
        return self.limits.max_pixels

    # -- inputs ---------------------------------------------------------------------------------

    def _check(self, images) -> list[Tensor]:
        if isinstance(images, Tensor):
            images = [images] if images.dim() == 3 else list(images)
        out = []
        for i, x in enumerate(images):
            if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.dim() != 3 or x.shape[0] != self.channels:
                raise DataError(
                    f"image {i}: expected uint8 pixels ({self.channels}, H, W), got "
                    f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}"
                )
            h, w = x.shape[1:]
            if h < 1 or w < 1:
                raise DataError(f"image {i} is {h}x{w}: an image needs at least one pixel")
            try:
                self.limits.check_pixels(h, w, f"image {i}")
            except CodecError as err:
                raise DataError(str(err)) from None
            out.append(x.cpu().contiguous())
        return out

    def _bar(self, tiles: int, what: str):

        show = self.progress
        disable = (not show) if show is not None else (True if tiles < PROGRESS_TILES else None)
        return tqdm(total=tiles, desc=what, unit="tile", disable=disable, leave=False)

    # -- the computations shared by both sides ----------------------------------------------------

    def _run_prior(self, chunk: Chunk, choose: Callable[[int, Tensor], Tensor]) -> Tensor:
        """The prior over a batch; ``choose(step, probs (real, W, K)) -> (real, W) int64`` codes
        or decodes the real rows of each step. Returns the batch's codes (size, T, M); padding
        rows hold code 0."""

        def step(s: int, logits: Tensor) -> Tensor:
            out = torch.zeros(chunk.size, logits.shape[1], dtype=torch.int64)
            out[: chunk.real] = choose(s, torch.softmax(logits, -1)[: chunk.real])
            return out

        return self.prior.generate(chunk.size, step)

    def _code_pixels(self, params: Tensor, known: Tensor, choose) -> None:
        """Every channel of a batch's sub-pixels; ``known`` (size, C, t, t) uint8 holds the values
        (0 outside the image and in padding rows): the encoder's are given, the decoder's are
        filled in channel by channel. ``choose(channel, depth, freqs (P, 2)) -> bits (P,)``."""
        for c in range(self.channels):
            cdf = pixel_cdf(self.model.head, params, known, c)
            values = code_values(cdf, known[:, c].numel(), functools.partial(choose, c))
            known[:, c] = values.view(known[:, c].shape).to(torch.uint8)

    # -- public API -----------------------------------------------------------------------------

    def compress(self, images, *, lossy: bool = False) -> list[bytes]:
        """Images (uint8 (N, C, H, W), or a list of (C, H, W) of any sizes) -> one ``.dqz`` file's
        bytes per image (each independent of the others)."""
        if not lossy and not self.model.head.has_likelihood:
            raise UsageError(f"the {self.model.head.name} head has no likelihood: only lossy coding is possible")
        images = self._check(images)
        with coder_threads():
            return [self._compress_one(x, lossy) for x in images]

    def _compress_one(self, x: Tensor, lossy: bool) -> bytes:
        c, h, w = x.shape
        t = self.tile
        parts = tiles(pad(x, t), t)  # (n, C, t, t), edge-replicated
        n = len(parts)
        inside = real_mask(h, w, t)  # (n, t, t)
        encoders = [self._constriction.stream.queue.RangeEncoder() for _ in range(n)]
        content = crc32(x.numpy()) if not lossy else size_crc(h, w)
        with self._bar(n, "compressing") as bar:
            for chunk in chunks(n, self.chunk):
                real = chunk.real
                batch = torch.zeros(chunk.size, c, t, t, dtype=torch.uint8)
                batch[:real] = parts[chunk.start : chunk.stop]
                sequence = torch.zeros(
                    chunk.size, self.layout.total_positions, self.layout.codebooks, dtype=torch.int64
                )
                sequence[:real] = self.layout.to_sequence(self.model.encode(batch))[:real]
                self._encode_codes(sequence, chunk, encoders)
                if lossy:
                    content = crc32(sequence[:real].numpy().astype(np.uint16), content)
                else:
                    known = (
                        batch
                        * torch.cat([inside[chunk.start : chunk.stop], inside.new_zeros(chunk.size - real, t, t)])[
                            :, None
                        ]
                    )
                    self._encode_pixels(sequence, known, chunk, inside, encoders)
                bar.update(real)
        header = Header("lossy" if lossy else "lossless", c, t, h, w, self.autoencoder_id, self.prior_id, content)
        return pack(header, [words_to_bytes(e.get_compressed()) for e in encoders])

    def _encode_codes(self, sequence: Tensor, chunk: Chunk, encoders: list) -> None:
        steps = sequence.view(chunk.size, self.prior.steps, self.prior.width)
        freqs: list[np.ndarray] = []

        def choose(s: int, probs: Tensor) -> Tensor:
            freqs.append(frequencies(probs).reshape(chunk.real, self.prior.width, -1))  # (real, W, K)
            return steps[: chunk.real, s]

        self._run_prior(chunk, choose)
        symbols = steps[: chunk.real].numpy().astype(np.int32)  # (real, S, W)
        for first, end in self._level_spans:
            level = np.stack(freqs[first:end], 1)  # (real, steps, W, K)
            for r in range(chunk.real):
                encoders[chunk.start + r].encode(
                    symbols[r, first:end].reshape(-1), self._family, level[r].reshape(-1, level.shape[-1])
                )

    def _encode_pixels(self, sequence: Tensor, known: Tensor, chunk: Chunk, inside: Tensor, encoders: list) -> None:
        params = self.model.decode(self.layout.from_sequence(sequence))  # (size, P, t, t)
        t2 = self.tile**2
        masks = inside[chunk.start : chunk.stop].reshape(chunk.real, t2).numpy()
        symbols = known.clone()
        coded: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

        def choose(c: int, depth: int, f: np.ndarray) -> np.ndarray:
            bits = ((symbols[:, c].reshape(-1).numpy() >> (7 - depth)) & 1).astype(bool)
            coded.setdefault(c, []).append((bits, f))
            return bits

        self._code_pixels(params, known, choose)
        for c in range(self.channels):
            for r in range(chunk.real):
                rows, mask = slice(r * t2, (r + 1) * t2), masks[r]
                bits = np.concatenate([b[rows][mask] for b, _ in coded[c]]).astype(np.int32)
                probs = np.concatenate([f[rows][mask] for _, f in coded[c]])
                encoders[chunk.start + r].encode(bits, self._family, probs)

    def _fits(self, header: Header) -> None:
        if header.autoencoder_id != self.autoencoder_id or header.prior_id != self.prior_id:
            raise CodecError(
                f"the file was made with another model (autoencoder {header.autoencoder_id.hex()}, prior "
                f"{header.prior_id.hex()}); this run has autoencoder {self.autoencoder_id.hex()}, prior "
                f"{self.prior_id.hex()}"
            )
        if header.channels != self.channels or header.tile != self.tile:
            raise CodecError(
                f"corrupt file: a {header.channels}-channel image in tiles of {header.tile} does not fit this "
                f"codec ({self.channels} channels, tiles of {self.tile})"
            )
        if header.mode == "lossless" and not self.model.head.has_likelihood:
            raise CodecError(f"corrupt file: a lossless file, but the {self.model.head.name} head has no likelihood")

    def decompress(self, files: Sequence[bytes]) -> list[Tensor]:
        """``.dqz`` bytes -> images uint8 (C, H, W): the originals (lossless) or the mean of
        p(x|z) (lossy). ``CodecError`` (one line) for a file that is not ours, damaged, truncated,
        over ``max_pixels`` or from another model; the header is checked before anything in
        proportion to its claims is allocated or decoded."""
        if isinstance(files, (bytes, bytearray)):
            files = [files]
        with coder_threads():
            return [self._decompress_one(bytes(f)) for f in files]

    def _decompress_one(self, data: bytes) -> Tensor:
        header, streams = unpack(data, self.limits)
        self._fits(header)
        t, c, n = self.tile, self.channels, header.tiles
        rc = self._constriction.stream.queue
        decoders = [rc.RangeDecoder(bytes_to_words(s)) for s in streams]
        del streams
        image = torch.zeros(c, header.height, header.width, dtype=torch.uint8)
        inside = real_mask(header.height, header.width, t)
        content = size_crc(header.height, header.width)
        with self._bar(n, "decompressing") as bar:
            for chunk in chunks(n, self.chunk):
                sequence = self._decode_codes(chunk, decoders)
                if header.mode == "lossy":
                    content = crc32(sequence[: chunk.real].numpy().astype(np.uint16), content)
                    parts = self.model.reconstruct(self.layout.from_sequence(sequence))[: chunk.real]
                else:
                    parts = self._decode_pixels(sequence, chunk, inside, decoders)
                place(image, parts, chunk.start, t)
                bar.update(chunk.real)
        if header.mode == "lossless":
            content = crc32(image.numpy())
        if content != header.content_crc:
            what = "codes do" if header.mode == "lossy" else "image does"
            raise CodecError(
                f"the decoded {what} not match the file's checksum: the file is damaged (a payload "
                "that decodes to something else), or was written on a platform whose arithmetic differs "
                "from this one's"
            )
        return image

    def _decode_codes(self, chunk: Chunk, decoders: list) -> Tensor:
        w = self.prior.width

        def choose(s: int, probs: Tensor) -> Tensor:
            freqs = frequencies(probs)  # (real*W, K)
            out = [
                _entropy_decode(decoders[chunk.start + r], self._family, freqs[r * w : (r + 1) * w], chunk.start + r)
                for r in range(chunk.real)
            ]
            return torch.from_numpy(np.stack(out).astype(np.int64))

        return self._run_prior(chunk, choose)

    def _decode_pixels(self, sequence: Tensor, chunk: Chunk, inside: Tensor, decoders: list) -> Tensor:
        t, t2 = self.tile, self.tile**2
        params = self.model.decode(self.layout.from_sequence(sequence))
        masks = inside[chunk.start : chunk.stop].reshape(chunk.real, t2).numpy()
        known = torch.zeros(chunk.size, self.channels, t, t, dtype=torch.uint8)

        def choose(c: int, depth: int, f: np.ndarray) -> np.ndarray:
            bits = np.zeros(len(f), dtype=bool)
            for r in range(chunk.real):
                rows, mask = slice(r * t2, (r + 1) * t2), masks[r]
                decoded = _entropy_decode(decoders[chunk.start + r], self._family, f[rows][mask], chunk.start + r)
                bits[rows][mask] = decoded.astype(bool)
            return bits

        self._code_pixels(params, known, choose)
        return known[: chunk.real]
