"""Probes of the shipped policy's loop: does it *read* the run (closed loop)?

The same scripted run is fed to the deployed `TuningScheduler` with three loss
trajectories (falling; validation rising for many decisions while training
falls; a training-loss spike). A closed-loop policy must decide differently on
them, and must not keep the rate where it was when validation keeps rising. On
a real run started far too hot, it must cut the rate. Every probe reads the
policy's own values (`TuningScheduler.history`'s ``policy_values``), not the
rate after the bundle's annealing prior, which falls whatever the policy does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.policy import TuningPolicy

TOTAL_STEPS = 1000
N_PARAMS = 16


@pytest.fixture(scope="module")
def policy() -> TuningPolicy:
    return TuningPolicy.load("default")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _falling(t: float) -> tuple[float, float]:
    train = 2.0 * math.exp(-3.0 * t) + 0.05
    return train, 1.1 * train


def _val_rising(t: float) -> tuple[float, float]:
    train, val = _falling(t)
    if t > 0.2:  # overfitting: validation climbs steadily while training keeps falling
        val = _falling(0.2)[1] * math.exp(2.0 * (t - 0.2))
    return train, val


def _spike(t: float) -> tuple[float, float]:
    train, val = _falling(t)
    if 0.3 < t < 0.4:  # a blow-up of both losses that recovers
        return 20.0 * train, 20.0 * val
    return train, val


def _scripted_lrs(policy: TuningPolicy, trajectory) -> np.ndarray:
    """Learning rate after every decision of a run whose losses follow ``trajectory``."""
    gen = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(N_PARAMS, generator=gen))
    opt = torch.optim.Adam([param], lr=1e-3)
    sched = policy.scheduler(opt, total_steps=TOTAL_STEPS)
    interval = sched.control_interval
    for step in range(TOTAL_STEPS):
        t = (step + 1) / TOTAL_STEPS
        train, val = trajectory(t)
        noise = 1.0 + 0.05 * float(torch.randn((), generator=gen))
        param.grad = torch.randn(N_PARAMS, generator=gen) * math.sqrt(train)
        opt.step()
        report_val = val if (step + 1) % interval == 0 else None
        sched.step(train * noise, val_loss=report_val)
    return _policy_lrs(sched)


def _policy_lrs(sched) -> np.ndarray:
    # The policy's own values: with an annealing prior the rate in effect falls whatever
    # the policy does (warm-up, then cosine), so the loop is read before the prior.
    return np.array([h["policy_values"]["learning_rate"] for h in sched.history])


def test_scripted_trajectories_get_different_decisions(policy: TuningPolicy) -> None:
    falling = _scripted_lrs(policy, _falling)
    rising = _scripted_lrs(policy, _val_rising)
    spike = _scripted_lrs(policy, _spike)
    n = min(len(falling), len(rising), len(spike))
    assert n > 10
    # Identical until the trajectories part (the first decisions see the same run) ...
    assert falling[0] == rising[0] == spike[0]
    # ... then the policy reads them: its decisions differ by more than rounding.
    assert np.max(np.abs(np.log10(falling[:n]) - np.log10(rising[:n]))) > 0.05
    assert np.max(np.abs(np.log10(falling[:n]) - np.log10(spike[:n]))) > 0.05


def test_validation_rising_ends_with_a_lower_rate(policy: TuningPolicy) -> None:
    """Validation climbing for the last 80% of a run must not leave the rate where a
    healthy run's ends: the policy cuts (or stops raising) when validation turns."""
    falling = _scripted_lrs(policy, _falling)
    rising = _scripted_lrs(policy, _val_rising)
    assert rising[-1] < falling[-1]


def _hot_run_lrs(
    policy: TuningPolicy, lr: float, optimizer: str
) -> tuple[float, np.ndarray, np.ndarray]:
    """The start rate, the policy's own values and the rates in effect of a hot run."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=gen)
    y = torch.tanh(x @ torch.randn(8, 1, generator=gen))
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    opt = cls(model.parameters(), lr=lr)
    steps = 500
    sched = policy.scheduler(opt, total_steps=steps)
    for _ in range(steps):
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())
    in_effect = np.array([h["hyperparameters"]["learning_rate"] for h in sched.history])
    return lr, _policy_lrs(sched), in_effect


@pytest.mark.parametrize(("lr", "optimizer"), [(0.5, "adam"), (20.0, "sgd")])
def test_run_started_far_too_hot_gets_its_rate_cut(
    policy: TuningPolicy, lr: float, optimizer: str
) -> None:
    start, lrs, in_effect = _hot_run_lrs(policy, lr, optimizer)
    # Within the first fifth of the run the policy cuts its own value well below the start ...
    early = lrs[: max(2, len(lrs) // 5)]
    assert early.min() < start / 3
    # ... and the cut is not undone: over the second half the rate in effect stays well
    # below the start. (Read in effect here: the shipped run-relative policy raises its
    # own value again in the last fifth, where the prior carries the rate in effect to ~0.)
    assert in_effect[len(in_effect) // 2 :].max() < start / 3
