"""Entropy coding of images with a trained autoencoder and its learned prior (spec section 7).

Lossless: the codes z of each tile under the prior, then every sub-pixel under p(x|z) in the
head's channel order (R, then G given R, then B given R and G), so a file costs
-log2 p(z) - log2 p(x|z) bits plus the header and the coder's few bytes. Lossy: the codes
alone; the decoder returns the mean of p(x|z). Range coding by ``constriction``.

Determinism, the hard part: the decoder must see bit-identical probabilities. So

- both sides run the prior step by step with its key/value cache (``PriorModel.generate``): the
  encoder feeds the true codes, the decoder the decoded ones (equal values), through the same
  operations; never the parallel teacher-forced pass;
- every tensor computation has a fixed shape: the prior runs on chunks of exactly ``CHUNK``
  tiles (padding rows hold code 0), and p(x|z) is computed one tile at a time (batch 1), so
  the caller's batch size, the position of a tile in its chunk and the other tiles in it do
  not matter (the kernels treat the rows of a fixed-shape batch independently; tested);
- all of it in fp32 on the CPU with autocast off and ``CODER_THREADS`` intra-op threads, the
  caller's thread setting restored afterwards;
- probabilities become integer frequencies in float64 numpy arithmetic (exactly rounded, the same
  on any machine): ``floor(p / sum(p) * (2^24 - K)) + 1``, at least one count per symbol, so no
  symbol is ever impossible; constriction codes with those frequencies (its own rescaling is
  exact integer arithmetic).

Files therefore decode on the machine that wrote them and on machines with the same CPU
instruction set and torch build; elsewhere transcendental functions may round differently, and
the content checksum then rejects the file instead of returning a wrong image.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from depthq.codec.format import (
    CodecError,
    Header,
    bytes_to_words,
    crc32,
    pack,
    unpack,
    words_to_bytes,
)
from depthq.errors import CorruptFileError, DataError, UsageError
from depthq.io import state_digest
from depthq.prior.layout import CodeLayout
from depthq.prior.model import PriorModel

log = logging.getLogger(__name__)

CHUNK = 64  # tiles per prior batch: part of the format (the shape every computation runs at)
CODER_THREADS = 1  # intra-op threads while computing coding probabilities
FREQUENCY_TOTAL = 2**24  # the resolution of the integer frequencies (constriction's default precision)


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


def tiles(x: Tensor, tile: int) -> Tensor:
    """(C, H, W) or (N, C, H, W) -> (n, C, t, t) tiles, row-major within each image."""
    x = x if x.dim() == 4 else x[None]
    n, c, h, w = x.shape
    return x.reshape(n, c, h // tile, tile, w // tile, tile).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, tile, tile)


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
        import constriction
    except ImportError:  # pragma: no cover - the extra is in the test dependencies
        raise ImportError("the codec needs constriction: pip install 'depthq[codec]' (or constriction)") from None
    return constriction


class Codec:
    """Compresses images to ``.dqz`` bytes and back, with an autoencoder and its prior.

    Example::

        codec = Codec(model, prior)
        files = codec.compress(images)              # uint8 (N, C, H, W) -> list of bytes
        assert torch.equal(torch.stack(codec.decompress(files)), images)

    Images are cut into tiles of the prior's image size (``tile``); their sides must be multiples
    of it. The codec works on CPU copies of both models; the originals are left untouched.
    """

    def __init__(
        self, model, prior: PriorModel, *, autoencoder_digest: str | None = None, prior_digest: str | None = None
    ) -> None:
        layout = prior.layout
        tile = prior_tile(model, prior)
        if layout != CodeLayout.of(model.config, tile):
            raise CorruptFileError(
                f"the prior models codes of layout {layout}, which this autoencoder does not "
                f"produce ({CodeLayout.of(model.config, tile)})"
            )
        self.model = copy.deepcopy(model).to("cpu", torch.float32).eval()
        self.prior = copy.deepcopy(prior).to("cpu", torch.float32).eval()
        self.layout, self.tile, self.channels = layout, tile, model.config.image_channels
        # the digests name the weights in every file (given when the caller has them already)
        self.autoencoder_id = bytes.fromhex(autoencoder_digest or state_digest(self.model))[:4]
        self.prior_id = bytes.fromhex(prior_digest or state_digest(self.prior))[:4]
        self._constriction = _constriction()
        self._family = self._constriction.stream.model.Categorical(perfect=False)

    # -- images <-> tiles ---------------------------------------------------------------------

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
            if h % self.tile or w % self.tile:
                raise DataError(
                    f"image {i} is {h}x{w}: its sides must be multiples of {self.tile}, the "
                    f"image size the prior was trained at (the codec codes {self.tile}x{self.tile} tiles)"
                )
            out.append(x.cpu().contiguous())
        return out

    def _tiles(self, x: Tensor) -> Tensor:
        return tiles(x, self.tile)

    def _untile(self, tiles: Tensor, h: int, w: int) -> Tensor:
        t, c = self.tile, tiles.shape[1]
        return tiles.view(h // t, w // t, c, t, t).permute(2, 0, 3, 1, 4).reshape(c, h, w)

    # -- the fixed-shape computations shared by both sides -------------------------------------

    def _chunks(self, n: int) -> Iterator[tuple[int, int]]:
        for start in range(0, n, CHUNK):
            yield start, min(start + CHUNK, n)

    def _encode(self, tiles: Tensor) -> Tensor:
        """Tiles (n, C, t, t) -> code sequences (n, T, M), in chunks of CHUNK (padded)."""
        out = []
        for start, end in self._chunks(len(tiles)):
            batch = torch.zeros(CHUNK, *tiles.shape[1:], dtype=torch.uint8)
            batch[: end - start] = tiles[start:end]
            out.append(self.layout.to_sequence(self.model.encode(batch))[: end - start])
        return torch.cat(out)

    def _run_prior(self, n: int, code) -> Tensor:
        """The prior over n tiles in chunks of CHUNK; ``code(rows, step, freqs)`` codes the real
        rows of a step with their frequencies (rows*W, K) and returns their codes (rows, W)."""
        out = []
        for start, end in self._chunks(n):
            real = end - start

            def choose(step: int, logits: Tensor, start=start, real=real) -> Tensor:
                freqs = frequencies(torch.softmax(logits, -1)[:real])  # (real*W, K)
                chosen = torch.zeros(CHUNK, logits.shape[1], dtype=torch.int64)
                chosen[:real] = code(range(start, start + real), step, freqs)
                return chosen

            out.append(self.prior.generate(CHUNK, choose)[:real])
        return torch.cat(out)

    def _params(self, sequence: Tensor) -> Tensor:
        """One tile's code sequence (T, M) -> its p(x|z) parameters (1, P, t, t), at batch 1."""
        return self.model.decode(self.layout.from_sequence(sequence[None]))

    def _pixel_freqs(self, params: Tensor, x: Tensor, channel: int) -> np.ndarray:
        """Frequencies (t*t, 256) of one channel of one tile given its channels before."""
        probs = self.model.head.channel_probs(params, x, channel)  # (1, 256, t, t)
        return frequencies(probs[0].permute(1, 2, 0))

    # -- public API -----------------------------------------------------------------------------

    def compress(self, images, *, lossy: bool = False) -> list[bytes]:
        """Images (uint8 (N, C, H, W), or a list of (C, H, W) of any sizes that are multiples of
        ``tile``) -> one ``.dqz`` file's bytes per image."""
        if not lossy and not self.model.head.has_likelihood:
            raise UsageError(f"the {self.model.head.name} head has no likelihood: only lossy coding is possible")
        rc = self._constriction.stream.queue
        with coder_threads():
            images = self._check(images)
            tiles = [self._tiles(x) for x in images]
            flat = torch.cat(tiles)
            sequences = self._encode(flat)  # (n, T, M)
            steps = sequences.view(len(flat), self.prior.steps, self.prior.width).numpy().astype(np.int32)
            encoders = [rc.RangeEncoder() for _ in range(len(flat))]

            def code(rows: range, step: int, freqs: np.ndarray) -> Tensor:
                w = self.prior.width
                for j, row in enumerate(rows):
                    encoders[row].encode(steps[row, step], self._family, freqs[j * w : (j + 1) * w])
                return torch.from_numpy(steps[rows.start : rows.stop, step].astype(np.int64))

            self._run_prior(len(flat), code)
            if not lossy:
                for row, tile in enumerate(flat):
                    params = self._params(sequences[row])
                    for c in range(self.channels):
                        symbols = tile[c].flatten().numpy().astype(np.int32)
                        encoders[row].encode(symbols, self._family, self._pixel_freqs(params, tile[None], c))
            files, row = [], 0
            for x, parts in zip(images, tiles):
                n = len(parts)
                content = x.numpy() if not lossy else sequences[row : row + n].numpy().astype(np.uint16)
                header = Header(
                    "lossy" if lossy else "lossless",
                    x.shape[0],
                    x.shape[1],
                    x.shape[2],
                    self.autoencoder_id,
                    self.prior_id,
                    crc32(content),
                )
                files.append(pack(header, [words_to_bytes(e.get_compressed()) for e in encoders[row : row + n]]))
                row += n
        return files

    def _tiles_of(self, header: Header) -> int:
        if header.autoencoder_id != self.autoencoder_id or header.prior_id != self.prior_id:
            raise CodecError(
                f"the file was made with another model (autoencoder {header.autoencoder_id.hex()}, prior "
                f"{header.prior_id.hex()}); this run has autoencoder {self.autoencoder_id.hex()}, prior "
                f"{self.prior_id.hex()}"
            )
        if header.channels != self.channels or header.height % self.tile or header.width % self.tile:
            raise CodecError(
                f"corrupt file: a {header.channels}x{header.height}x{header.width} image does not "
                f"fit this codec ({self.channels} channels, tiles of {self.tile})"
            )
        return (header.height // self.tile) * (header.width // self.tile)

    def decompress(self, files: Sequence[bytes]) -> list[Tensor]:
        """``.dqz`` bytes -> images uint8 (C, H, W): the originals (lossless) or the mean of
        p(x|z) (lossy). ``CodecError`` for a file that is not ours, damaged or truncated, or
        from another model."""
        if isinstance(files, (bytes, bytearray)):
            files = [files]
        rc = self._constriction.stream.queue
        parsed = [unpack(bytes(f), self._tiles_of) for f in files]
        with coder_threads():
            streams = [s for _, ss in parsed for s in ss]
            decoders = [rc.RangeDecoder(bytes_to_words(s)) for s in streams]

            def code(rows: range, step: int, freqs: np.ndarray) -> Tensor:
                w = self.prior.width
                out = [decoders[row].decode(self._family, freqs[j * w : (j + 1) * w]) for j, row in enumerate(rows)]
                return torch.from_numpy(np.stack(out).astype(np.int64))

            sequences = self._run_prior(len(streams), code)  # (n, T, M)
            images, row = [], 0
            for header, ss in parsed:
                n = len(ss)
                mine = sequences[row : row + n]
                if header.mode == "lossy":
                    if crc32(mine.numpy().astype(np.uint16)) != header.content_crc:
                        raise CodecError(
                            "the decoded codes do not match the file's checksum: it was written on a "
                            "platform whose arithmetic differs from this one's"
                        )
                    tiles = torch.cat([self.model.reconstruct(self.layout.from_sequence(s[None])) for s in mine])
                else:
                    tiles = torch.cat([self._decode_pixels(s, decoders[row + i]) for i, s in enumerate(mine)])
                image = self._untile(tiles, header.height, header.width)
                if header.mode == "lossless" and crc32(image.numpy()) != header.content_crc:
                    raise CodecError(
                        "the decoded image does not match the file's checksum: it was written on a "
                        "platform whose arithmetic differs from this one's"
                    )
                images.append(image)
                row += n
        return images

    def _decode_pixels(self, sequence: Tensor, decoder) -> Tensor:
        params = self._params(sequence)
        t = self.tile
        x = torch.zeros(1, self.channels, t, t, dtype=torch.uint8)
        for c in range(self.channels):
            values = decoder.decode(self._family, self._pixel_freqs(params, x, c))
            x[0, c] = torch.from_numpy(values.astype(np.uint8)).view(t, t)
        return x
