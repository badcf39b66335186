"""SkippingAdam: a skipped update is exactly an update that never happened, decided on the device."""

from __future__ import annotations

import pytest
import torch

from depthq.train.module import SkippingAdam


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g)), torch.nn.Parameter(torch.randn(3, generator=g))]


def grads(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    return [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]


def set_grads(params, values) -> None:
    for p, v in zip(params, values):
        p.grad = v.clone()


def snapshot(params, optimizer) -> list[torch.Tensor]:
    out = [p.detach().clone() for p in params]
    for p in params:
        out += [v.clone() for _, v in sorted(optimizer.state[p].items())]
    return out


def assert_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_normal_steps_equal_adam():
    params, ref = make_params(), make_params()
    opt = SkippingAdam(params, lr=0.1)
    assert opt.fused  # fused Adam runs on the CPU (torch >= 2.4): the decision stays on the device
    ref_opt = torch.optim.Adam(ref, lr=0.1, fused=True)
    plain = make_params()
    plain_opt = torch.optim.Adam(plain, lr=0.1)
    for step in range(3):
        for ps, o in ((params, opt), (ref, ref_opt), (plain, plain_opt)):
            set_grads(ps, grads(step))
            if o is opt:
                o.skip = torch.tensor(False)
            o.step()
    assert_equal(snapshot(params, opt), snapshot(ref, ref_opt))
    for p, q in zip(params, plain):  # the same update as the unfused implementation, up to rounding
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert float(opt.state[params[0]]["step"]) == 3


@pytest.mark.parametrize("bad", ["nan", "large"])
def test_a_skipped_step_changes_neither_parameters_nor_state(bad):
    params, ref = make_params(), make_params()
    opt, ref_opt = SkippingAdam(params, lr=0.1), torch.optim.Adam(ref, lr=0.1, fused=True)
    for ps, o in ((params, opt), (ref, ref_opt)):
        set_grads(ps, grads(0))
        o.step()
    before = snapshot(params, opt)
    # a non-finite gradient, or one above the skip threshold: either way skip is a device tensor
    g = [torch.full_like(x, float("nan")) for x in grads(1)] if bad == "nan" else [x * 1e6 for x in grads(1)]
    set_grads(params, g)
    opt.skip = torch.tensor(True)
    opt.step()
    assert_equal(snapshot(params, opt), before)  # parameters, exp_avg, exp_avg_sq and step
    assert not hasattr(opt, "found_inf")
    # the next normal step continues as if the skipped one had never been taken
    for ps, o in ((params, opt), (ref, ref_opt)):
        set_grads(ps, grads(2))
        o.step()
    assert_equal(snapshot(params, opt), snapshot(ref, ref_opt))


def test_a_skip_on_the_first_step_leaves_fresh_state():
    params, ref = make_params(), make_params()
    opt = SkippingAdam(params, lr=0.1)
    set_grads(params, [torch.full_like(x, float("inf")) for x in grads(0)])
    opt.skip = torch.tensor(True)
    opt.step()
    assert torch.equal(params[0], ref[0]) and float(opt.state[params[0]]["step"]) == 0
    assert not opt.state[params[0]]["exp_avg"].any()


def test_the_skip_combines_with_a_grad_scaler():
    scaler_cls = getattr(torch.amp, "GradScaler", None)
    if scaler_cls is None:
        pytest.skip("torch.amp.GradScaler not available")
    try:
        scaler = scaler_cls("cpu", init_scale=1024.0)
    except (RuntimeError, TypeError) as err:
        pytest.skip(f"no CPU GradScaler here: {err}")
    params, ref = make_params(), make_params()
    opt, ref_opt = SkippingAdam(params, lr=0.1), torch.optim.Adam(ref, lr=0.1, fused=True)

    def scaled_step(skip: bool, seed: int) -> None:
        loss = sum((p * g).sum() for p, g in zip(params, grads(seed)))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # as DQModule.on_before_optimizer_step does for a fused optimizer
        opt.skip = torch.tensor(skip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()

    scaled_step(False, 0)
    set_grads(ref, grads(0))
    ref_opt.step()
    before = snapshot(params, opt)
    scaled_step(True, 1)
    assert_equal(snapshot(params, opt), before)
    assert scaler.get_scale() == 1024.0  # our skip is not an overflow: the scale is kept
    scaled_step(False, 2)
    set_grads(ref, grads(2))
    ref_opt.step()
    for p, q in zip(params, ref):  # the scale is a power of two: unscaled gradients are exact
        assert torch.equal(p, q)


def test_loads_the_state_of_an_unfused_adam():
    params, ref = make_params(), make_params()
    plain = torch.optim.Adam(params, lr=0.1)  # as checkpoints before the fused optimizer hold
    ref_opt = torch.optim.Adam(ref, lr=0.1, fused=True)
    for ps, o in ((params, plain), (ref, ref_opt)):
        set_grads(ps, grads(0))
        o.step()
    opt = SkippingAdam(params, lr=0.1)
    opt.load_state_dict(plain.state_dict())
    assert opt.param_groups[0]["fused"] and opt.state[params[0]]["step"].dtype == torch.float32
    for ps, o in ((params, opt), (ref, ref_opt)):
        set_grads(ps, grads(1))
        o.step()
    for p, q in zip(params, ref):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_under_16_mixed_the_norm_and_the_skip_see_the_unscaled_gradients():
    from types import SimpleNamespace

    from depthq.config import load_config
    from depthq.train.module import DQModule

    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    except (AttributeError, RuntimeError, TypeError) as err:
        pytest.skip(f"no CPU GradScaler here: {err}")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = DQModule(load_config(None, ["recipe=null", "model.preset=tiny"]))
    initial = {k: v.clone() for k, v in reference.state_dict().items()}  # before the EMA moves
    reference.model(x).loss.backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
    true_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])))
    # a threshold the true norm passes and the scaled one (x1024) would not
    config = load_config(None, ["recipe=null", "model.preset=tiny", "train.grad_clip=0", f"train.skip_grad_norm={10 * true_norm}"])
    module = DQModule(config)
    module.load_state_dict(initial)
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler))  # what is read
    module.log_dict = lambda *a, **k: None
    opt = SkippingAdam(module.parameters(), lr=1e-3)
    scaler.scale(module.model(x).loss).backward()
    module.on_before_optimizer_step(opt)
    assert not bool(opt.skip)
    for name, p in module.named_parameters():
        if name in grads:
            assert torch.equal(p.grad, grads[name]), name  # unscaled exactly (a power of two)
    scaler.step(opt)  # the fused step with the scaler's found_inf and ours
    scaler.update()
    assert float(opt.state[next(module.parameters())]["step"]) == 1
