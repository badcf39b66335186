"""DQ-AE / VQ-VAE: shapes, the hierarchy, decode, the rate, configs, a few training steps."""

import math

import pytest
import torch

from depthq.evaluate import LevelShape, uniform_rate_bits
from depthq.models import HierarchicalAutoencoder, ModelConfig, preset


def images(b=2, c=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_for_one_to_three_levels_at_32_and_64(levels, size):
    config = preset("tiny", codebook_sizes=[8] * levels, head="dmol")
    model = HierarchicalAutoencoder(config)
    out = model(images(size=size))
    assert out.params.shape == (2, 100, size, size)  # 10 mixtures x (1 + 2*3 + 3)
    # level l sits at size / (stride * 2^(coder_blocks-1) * 2^l)
    assert [tuple(z.shape) for z in out.indices] == [
        (2, 2, size // 2 // 2**lv, size // 2 // 2**lv) for lv in range(levels)
    ]
    assert out.loss.shape == () and torch.isfinite(out.loss)


def test_same_weights_run_at_32_and_64():
    model = HierarchicalAutoencoder(preset("tiny")).eval()
    a, b = model(images(size=32)), model(images(size=64))
    assert a.params.shape[-1] == 32 and b.params.shape[-1] == 64


def test_official_preset_matches_the_official_code_and_the_22m_preset():
    # 44.6M: the official code's default (channel 256, 3 res blocks, 2 coder blocks, M=5, D=64)
    official = HierarchicalAutoencoder(preset("official"))
    assert 44e6 < official.num_parameters() < 45e6
    paper = HierarchicalAutoencoder(preset("paper-22m"))
    assert 21.5e6 < paper.num_parameters() < 22.5e6


def test_dq_and_vq_differ_only_in_the_quantizer():
    config = preset("tiny", codebook_sizes=[8, 8])
    torch.manual_seed(0)
    dq = HierarchicalAutoencoder(config)
    torch.manual_seed(0)
    vq = HierarchicalAutoencoder(config.replace(quantizer="vq"))
    outside = lambda m: {k: v for k, v in m.state_dict().items() if ".quantizer." not in k}  # noqa: E731
    a, b = outside(dq), outside(vq)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the quantizers really differ: M codebooks of D versus one of M*D
    assert dq.quantizers[0].codebooks.shape == (2, 8, 4)
    assert vq.quantizers[0].codebooks.shape == (1, 8, 8)


def test_coupled_baseline_projects_to_d_and_outputs_m_times_d():
    model = HierarchicalAutoencoder(preset("tiny", quantizer="coupled"))
    assert model.bottlenecks[0].project.out_channels == 4
    out = model(images())
    assert out.levels[0].quantized.shape[1] == 8


def test_decode_of_encode_equals_the_forward_pass_in_eval_mode():
    model = HierarchicalAutoencoder(preset("tiny", codebook_sizes=[8, 8, 8])).eval()
    x = images()
    out = model(x)
    codes = model.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(codes, out.indices))
    assert torch.equal(model.decode(codes), out.params)
    image = model.reconstruct(codes)
    assert image.dtype == torch.uint8 and image.shape == x.shape
    assert torch.equal(image, model.head.mean(out.params))
    assert torch.equal(model.reconstruct(codes, kind="mode"), model.head.mode(out.params))
    g = torch.Generator().manual_seed(0)
    assert model.reconstruct(codes, kind="sample", generator=g).shape == x.shape
    with pytest.raises(ValueError, match="kind must be"):
        model.reconstruct(codes, kind="median")


def test_decoding_a_subset_of_levels_zeroes_the_others():
    model = HierarchicalAutoencoder(preset("tiny", codebook_sizes=[8, 8])).eval()
    codes = model.encode(images())
    full = model.decode(codes)
    top_only = model.decode([None, codes[1]])
    assert not torch.equal(full, top_only)
    manual = model.decoder(torch.cat([torch.zeros(2, 16, 16, 16), model.upsamplers[1](
        model.quantizers[1].decode(codes[1]))], 1))
    assert torch.allclose(top_only, manual)
    assert model.decode_levels(codes, keep=[0]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="at least one level"):
        model.decode([None, None])


def test_encode_does_not_move_codebooks_and_keeps_the_mode():
    model = HierarchicalAutoencoder(preset("tiny")).train()
    before = model.quantizers[0].codebooks.clone()
    model.encode(images())
    assert torch.equal(before, model.quantizers[0].codebooks)
    assert model.training


def test_rate_formula_on_the_official_config():
    config = preset("official")  # 32x32: levels at 8x8, 4x4, 2x2; M=5, K=32
    expected = (64 + 16 + 4) * 5 * math.log2(32)  # = 2100 bits per image
    assert config.bits_per_image() == pytest.approx(expected)
    model = HierarchicalAutoencoder(preset("tiny", codebook_sizes=[8, 16])).eval()
    codes = model.encode(images())
    shapes = [LevelShape.of(z, k) for z, k in zip(codes, [8, 16])]
    assert uniform_rate_bits(shapes) == pytest.approx(16 * 16 * 2 * 3 + 8 * 8 * 2 * 4)
    assert model.config.bits_per_image() == pytest.approx(uniform_rate_bits(shapes))
    assert preset("tiny", quantizer="vq").bits_per_image() == pytest.approx((256 + 64) * 4)


@pytest.mark.parametrize("quantizer", ["dq", "vq"])
def test_both_models_train_a_few_steps(quantizer):
    torch.manual_seed(0)
    model = HierarchicalAutoencoder(preset("tiny", quantizer=quantizer, head="categorical")).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = images(b=8)
    codebook = model.quantizers[0].codebooks.clone()
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        out = model(x)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert not torch.equal(codebook, model.quantizers[0].codebooks)


def test_bf16_autocast_forward_keeps_fp32_losses():
    model = HierarchicalAutoencoder(preset("tiny")).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images())
    assert out.params.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_encodes_and_decodes(dtype):
    torch.manual_seed(0)
    reference = HierarchicalAutoencoder(preset("tiny")).eval()
    model = HierarchicalAutoencoder(preset("tiny"))
    model.load_state_dict(reference.state_dict())
    model = model.to(dtype).eval()
    assert model.dtype == dtype and all(q.codebooks.dtype == torch.float32 for q in model.quantizers)
    x = images(4)
    try:
        out = model(x)
    except (NotImplementedError, RuntimeError) as err:  # an op without a kernel for dtype on CPU
        if "not implemented" in str(err).lower():
            pytest.skip(f"{dtype} not supported on this CPU build: {err}")
        raise
    codes = model.encode(x)  # fp32 codes into the half-precision decoder: no dtype mismatch
    params = model.decode(codes)
    assert params.dtype == dtype and torch.equal(params, out.params)
    assert model.reconstruct(codes).dtype == torch.uint8
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    # the same network in fp32, to the half type's rounding
    ref = reference(x)
    torch.testing.assert_close(out.params.float(), ref.params, rtol=0.05, atol=0.05)


def test_the_search_backend_reaches_every_quantizer_and_old_configs_load():
    model = HierarchicalAutoencoder(preset("tiny", search="torch"))
    assert {q.search for q in model.quantizers} == {"torch"}
    old = preset("tiny").to_dict()
    del old["search"]  # a config.json written before the field existed
    assert ModelConfig.from_dict(old).search == "auto"


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"image_size": 34}, "not divisible by the total stride 4"),
        ({"codebook_sizes": []}, "codebook_sizes is empty"),
        ({"head": "gaussian"}, "model.head must be one of"),
        ({"quantizer": "rq"}, "model.quantizer must be one of"),
        ({"stride": 3}, "model.stride must be 2 or 4"),
        ({"codebook_sizes": [8, 0]}, r"codebook sizes in \[1, 1048576\]"),
        ({"codebook_sizes": [8, 2**21]}, r"codebook sizes in \[1, 1048576\]"),
        ({"codebook_sizes": [8] * 17}, "at most 16 levels"),
        ({"channels": 0}, r"model.channels must be an int in \[1, 65536\]"),
        ({"coder_blocks": 2**62}, r"model.coder_blocks must be an int in \[1, 16\]"),
        ({"res_blocks": 10**6}, r"model.res_blocks must be an int in \[0, 256\]"),
        ({"decay": 2.0}, r"model.decay must be in \[0, 1\]"),
        ({"search": "cuda"}, "model.search must be one of"),
    ],
)
def test_invalid_configs_raise_at_construction(changes, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**preset("tiny", codebook_sizes=[8, 8]).to_dict(), **changes})


def test_bad_input_raises():
    model = HierarchicalAutoencoder(preset("tiny"))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected images \(B, 3, H, W\)"):
        model(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.zeros(2, 3, 22, 22, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")


def test_an_empty_batch_is_refused_at_the_input():
    model = HierarchicalAutoencoder(preset("tiny"))
    with pytest.raises(ValueError, match="expected at least one image, got an empty batch"):
        model(torch.zeros(0, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        model.encode(torch.zeros(0, 3, 32, 32, dtype=torch.uint8))


def test_mse_weight_adds_the_squared_error_of_the_expected_image():
    import dataclasses

    import torch.nn.functional as F

    from depthq.models.heads import normalise

    config = ModelConfig(image_size=8, channels=8, res_channels=4, res_blocks=0, coder_blocks=1,
                         codebook_sizes=[4], num_codebooks=2, code_dim=2, mixtures=2)
    torch.manual_seed(0)
    plain = HierarchicalAutoencoder(config)
    weighted = HierarchicalAutoencoder(dataclasses.replace(config, mse_weight=3.0))
    weighted.load_state_dict(plain.state_dict())
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    plain.eval(), weighted.eval()
    a, b = plain(x), weighted(x)
    extra = 3.0 * F.mse_loss(weighted.head.expected(b.params), normalise(x))
    assert torch.allclose(b.recon_loss, a.recon_loss) and torch.allclose(b.loss, a.loss + extra)
    with pytest.raises(ValueError, match="mse_weight"):
        ModelConfig(mse_weight=-1.0)
