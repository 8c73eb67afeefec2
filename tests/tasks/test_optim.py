"""The batched optimizers equal torch.optim run by run."""

from __future__ import annotations

import pytest
import torch

from tasks.optim import make_batched_optimizer, make_torch_optimizer

B, P, STEPS = 3, 7, 20


def _grad_fn(a: torch.Tensor, p: torch.Tensor, step: int) -> torch.Tensor:
    """A parameter-dependent gradient (so trajectories compound), plus a step-dependent kick."""
    return p @ a + torch.sin(torch.arange(p.shape[-1]) + step)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_batched_optimizer_matches_torch_optim(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(P, P, generator=gen) * 0.3
    p0 = torch.randn(B, P, generator=gen)
    lr = torch.tensor([0.01, 0.05, 0.002], dtype=torch.float64)
    momentum = torch.tensor([0.9, 0.5, 0.0], dtype=torch.float64)
    weight_decay = torch.tensor([0.0, 1e-2, 1e-3], dtype=torch.float64)

    batched = p0.clone()
    opt = make_batched_optimizer(name, B, (P,))
    refs = [p0[i].clone().requires_grad_(True) for i in range(B)]
    torch_opts = [
        make_torch_optimizer(
            name,
            [refs[i]],
            learning_rate=float(lr[i]),
            momentum=float(momentum[i]),
            weight_decay=float(weight_decay[i]),
        )
        for i in range(B)
    ]
    for step in range(STEPS):
        if step == 10:  # hyperparameters change mid-run, as a controller does
            lr = lr * torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
            # (torch's RMSprop has no momentum buffer for a run that started at 0)
            third = 0.0 if name == "rmsprop" else 0.5
            momentum = torch.tensor([0.0, 0.9, third], dtype=torch.float64)
            for i, o in enumerate(torch_opts):
                group = o.param_groups[0]
                group["lr"] = float(lr[i])
                if name in ("sgd", "rmsprop"):
                    group["momentum"] = float(momentum[i])
                else:
                    group["betas"] = (float(momentum[i]), group["betas"][1])
        opt.step(batched, _grad_fn(a, batched, step), lr, momentum, weight_decay)
        for i in range(B):
            refs[i].grad = _grad_fn(a, refs[i].detach(), step)
            torch_opts[i].step()
    expected = torch.stack([r.detach() for r in refs])
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_reset_slots_restarts_state(name: str) -> None:
    opt = make_batched_optimizer(name, 2, (3,))
    hp = torch.full((2,), 0.1, dtype=torch.float64)
    fresh = make_batched_optimizer(name, 2, (3,))
    p, q = torch.ones(2, 3), torch.ones(2, 3)
    opt.step(p, torch.ones(2, 3), hp, hp * 9, hp * 0)
    opt.reset_slots([0, 1])
    p.copy_(q)
    opt.step(p, torch.ones(2, 3), hp, hp * 9, hp * 0)
    fresh.step(q, torch.ones(2, 3), hp, hp * 9, hp * 0)
    torch.testing.assert_close(p, q)


def test_unknown_optimizer_names_the_options() -> None:
    with pytest.raises(ValueError, match="adamw"):
        make_batched_optimizer("adamax", 1, (1,))
