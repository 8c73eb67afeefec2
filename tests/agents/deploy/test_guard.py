"""`NonFiniteGuard` / `all_finite`: a NaN/inf gradient never reaches the optimizer,
and checking a finite gradient leaves it (and the update) bit for bit as it was."""

from __future__ import annotations

import math

import pytest
import torch

from agents.deploy import guard as guard_module
from agents.deploy.guard import NonFiniteGuard, all_finite


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).view(torch.uint8).clone()


def _snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = [_bits(p) for p in model.parameters()]
    for state in opt.state.values():
        out += [_bits(v) for v in state.values() if isinstance(v, torch.Tensor)]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_non_finite_gradient_leaves_weights_and_state_bit_identical(dtype, bad, opt_name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    model = model.to(dtype)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if opt_name == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    skips: list[int] = []
    guard = NonFiniteGuard(opt, on_skip=lambda: skips.append(1))
    x = torch.randn(4, 5, dtype=dtype)
    model(x).square().mean().backward()
    opt.step()  # a finite update first, so there is momentum / Adam state to keep
    before = _snapshot(model, opt)
    opt.zero_grad()
    model(x).square().mean().backward()
    list(model.parameters())[2].grad.view(-1)[3] = bad  # one element of one tensor
    opt.step()
    assert guard.n_skipped == 1 and skips == [1]
    after = _snapshot(model, opt)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    guard.remove()


def test_checking_finite_gradients_changes_no_bit():
    # Subnormals, signed zeros and huge finite values: the scale-1 check must not
    # round, flush or overflow any of them (even with denormals flushed).
    values = torch.tensor([1e-40, -1e-45, -0.0, 0.0, 3.4e38, -3.4e38, 1.0, 1e30])
    grads = [values.clone(), values.double().clone(), values.clone().reshape(2, 4).t()]
    before = [_bits(g) for g in grads]
    flush = torch.set_flush_denormal(True)
    try:
        assert all_finite(grads)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    assert all(torch.equal(b, _bits(g)) for b, g in zip(before, grads))


def test_a_huge_finite_gradient_is_applied():
    """The guard's promise is NaN/inf; a finite 1e30 is a number and is applied
    (the learning-rate policy, not the guard, deals with large gradients)."""
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-20)
    guard = NonFiniteGuard(opt, on_skip=lambda: None)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)
    before = model.weight.detach().clone()
    opt.step()
    assert guard.n_skipped == 0 and not torch.equal(before, model.weight)


def test_sparse_gradients_take_the_norm_path():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    guard = NonFiniteGuard(opt, on_skip=lambda: None)
    emb(torch.tensor([1, 2])).sum().backward()
    opt.step()
    assert guard.n_skipped == 0
    before = emb.weight.detach().clone()
    opt.zero_grad()
    (emb(torch.tensor([1, 2])).sum() * math.nan).backward()
    opt.step()
    assert guard.n_skipped == 1 and torch.equal(before, emb.weight)
    assert torch.device("cpu") not in guard_module._NO_AMP_KERNEL  # dense lists keep the kernel


def test_without_the_fused_kernel_the_norm_decides(monkeypatch):
    def missing(*args, **kwargs):
        raise NotImplementedError("no kernel for this backend")

    monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", missing)
    monkeypatch.setattr(guard_module, "_NO_AMP_KERNEL", set())
    grads = [torch.ones(3), torch.ones(2)]
    assert all_finite(grads)
    grads[1][0] = math.nan
    assert not all_finite(grads)
    assert torch.device("cpu") in guard_module._NO_AMP_KERNEL


def test_gradients_that_require_grad_are_checked():
    p = torch.nn.Parameter(torch.ones(3))
    (p**2).sum().backward(create_graph=True)
    assert p.grad is not None and p.grad.requires_grad
    assert all_finite([p.grad])
    assert not all_finite([p.grad * math.nan])
    p.grad = None  # break the create_graph reference cycle
