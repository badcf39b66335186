"""``augment``: every output is a flip and/or shifted crop of its own input, seeded, uint8."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthq.data import augment


def _batch(b: int = 16, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _candidates(image: torch.Tensor, pad: int, mode: str) -> list[torch.Tensor]:
    """Every crop of the padded image (by torch's own F.pad), flipped or not: flip(crop(pad(x)))."""
    padded = F.pad(image[None].float(), (pad,) * 4, mode="reflect" if mode == "reflect" else "constant")[0]
    h, w = image.shape[1:]
    crops = [padded[:, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [c.flip(-1) for c in crops]


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_each_output_is_a_flip_of_a_crop_of_its_input(mode):
    batch = _batch()
    out = augment(batch, flip=True, crop_padding=3, generator=torch.Generator().manual_seed(1), padding_mode=mode)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    for x, y in zip(batch, out):
        assert any(torch.equal(y.float(), c) for c in _candidates(x, 3, mode))
    assert not torch.equal(out, batch)


def test_flip_only_mirrors_some_images_and_keeps_the_others():
    batch = _batch(64)
    out = augment(batch, flip=True, crop_padding=0, generator=torch.Generator().manual_seed(2))
    flipped = [torch.equal(y, x.flip(-1)) for x, y in zip(batch, out)]
    kept = [torch.equal(y, x) for x, y in zip(batch, out)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # about half


def test_same_seed_same_batch_other_seed_other_batch():
    batch = _batch()
    run = lambda seed: augment(batch, flip=True, crop_padding=2, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(5), run(5)) and not torch.equal(run(5), run(6))


def test_nothing_enabled_is_the_identity_and_bad_arguments_raise():
    batch = _batch()
    assert torch.equal(augment(batch, flip=False, crop_padding=0, generator=None), batch)
    with pytest.raises(ValueError, match=r"crop_padding must be in \[0, 8\)"):
        augment(batch, flip=False, crop_padding=8, generator=None)
    with pytest.raises(ValueError, match="padding_mode"):
        augment(batch, flip=False, crop_padding=1, generator=None, padding_mode="edge")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment(batch[0], flip=True, crop_padding=0, generator=None)
