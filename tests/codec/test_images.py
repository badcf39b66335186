"""Reading image files: each Pillow mode converted exactly or refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from depthq.codec.images import read_image
from depthq.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)


def save(tmp_path, name: str, image: Image.Image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def chw(array: np.ndarray) -> torch.Tensor:
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_rgb_and_greyscale_are_read_as_they_are(tmp_path):
    assert torch.equal(read_image(save(tmp_path, "a.png", Image.fromarray(RGB)), 3), chw(RGB))
    assert torch.equal(read_image(save(tmp_path, "g.png", Image.fromarray(GREY)), 1), chw(GREY))
    # grey for an RGB model: replicated; RGB with equal channels for a grey model: exact
    assert torch.equal(read_image(tmp_path / "g.png", 3), chw(np.repeat(GREY[..., None], 3, 2)))
    same = np.repeat(GREY[..., None], 3, 2)
    assert torch.equal(read_image(save(tmp_path, "s.png", Image.fromarray(same)), 1), chw(GREY))
    with pytest.raises(DataError, match="in colour") as err:
        read_image(tmp_path / "a.png", 1)
    one_line(err)


def test_one_bit_and_palette_images_convert_exactly(tmp_path):
    bits = GREY > 127
    path = save(tmp_path, "b.png", Image.fromarray(bits))
    assert Image.open(path).mode == "1"
    assert torch.equal(read_image(path, 1), chw(np.where(bits, 255, 0).astype(np.uint8)))
    palette = Image.fromarray(RGB).quantize(16)
    path = save(tmp_path, "p.png", palette)
    assert Image.open(path).mode == "P"
    assert torch.equal(read_image(path, 3), chw(np.asarray(palette.convert("RGB"))))


def test_alpha_is_dropped_when_opaque_and_refused_otherwise(tmp_path):
    opaque = np.concatenate([RGB, np.full((5, 7, 1), 255, np.uint8)], 2)
    assert torch.equal(read_image(save(tmp_path, "o.png", Image.fromarray(opaque)), 3), chw(RGB))
    la = np.stack([GREY, np.full_like(GREY, 255)], 2)
    assert torch.equal(read_image(save(tmp_path, "la.png", Image.fromarray(la, "LA")), 1), chw(GREY))
    see_through = opaque.copy()
    see_through[2, 3, 3] = 254
    with pytest.raises(DataError, match="transparency") as err:
        read_image(save(tmp_path, "t.png", Image.fromarray(see_through)), 3)
    one_line(err)
    palette = Image.fromarray(RGB).quantize(8)
    palette.info["transparency"] = 0
    with pytest.raises(DataError, match="transparency"):
        read_image(save(tmp_path, "pt.png", palette, transparency=0), 3)


def test_sixteen_bit_is_reduced_only_when_exact(tmp_path):
    exact = GREY.astype(np.uint16) * 257
    path = save(tmp_path, "w.png", Image.fromarray(exact))
    assert Image.open(path).mode.startswith("I")
    assert torch.equal(read_image(path, 1), chw(GREY))
    fine = exact.copy()
    fine[0, 0] += 1
    with pytest.raises(DataError, match="more than 8 bits") as err:
        read_image(save(tmp_path, "f.png", Image.fromarray(fine)), 1)
    one_line(err)
    with pytest.raises(DataError, match="more than 8 bits"):
        read_image(save(tmp_path, "i.tif", Image.fromarray(fine.astype(np.int32))), 1)


def test_float_cmyk_and_other_modes_are_refused(tmp_path):
    with pytest.raises(DataError, match="F pixels") as err:
        read_image(save(tmp_path, "f.tif", Image.fromarray(GREY.astype(np.float32))), 1)
    one_line(err)
    with pytest.raises(DataError, match="CMYK pixels"):
        read_image(save(tmp_path, "c.jpg", Image.fromarray(RGB).convert("CMYK")), 3)
    with pytest.raises(DataError, match="cannot read .* as an image"):
        (tmp_path / "junk.png").write_bytes(b"not an image")
        read_image(tmp_path / "junk.png", 3)
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match="2 frames"):
        read_image(path, 3)


def test_the_pixel_limit_is_checked_before_decoding(tmp_path):
    path = save(tmp_path, "big.png", Image.fromarray(RGB))
    with pytest.raises(DataError, match=r"5x7 \(35 pixels\), over the limit of 34 pixels: allow it with --max-pixels 35"):
        read_image(path, 3, max_pixels=34)
    assert read_image(path, 3, max_pixels=35).shape == (3, 5, 7)
