"""Garbage in, finite out: the scheduler and tracker under NaN / inf / tiny / huge
losses and gradients (hypothesis)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.deploy.scheduler import TuningScheduler
from hpo_env.features import FeatureExtractor
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, 1e-30, 1e30, -1e30]
values = st.one_of(st.sampled_from(SPECIAL), st.floats(-1e3, 1e3, allow_nan=False))
HPARAMS = ("learning_rate", "momentum", "weight_decay", "entropy_coef")


def _check_optimizer(opt: torch.optim.Optimizer, space) -> None:
    for group in opt.param_groups:
        lr, momentum, wd = (
            group["lr"],
            group["betas"][0] if "betas" in group else group["momentum"],
            group["weight_decay"],
        )
        for name, value in (("learning_rate", lr), ("momentum", momentum), ("weight_decay", wd)):
            assert math.isfinite(value), f"{name}={value} written into the optimizer"
            spec = space[name]
            if name != "weight_decay" or value != 0.0:
                assert spec.low <= value <= spec.high, (name, value)


RUNS = {
    "losses": st.lists(values, min_size=1, max_size=12),
    "grads": st.lists(values, min_size=1, max_size=12),
    "interval": st.integers(1, 4),
    "adam": st.booleans(),
}
"""A short run: its losses, the gradient written before each update, the interval, the optimizer."""
RUN_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@RUN_SETTINGS
@given(**RUNS, gain=st.sampled_from([1.0, 50.0]))
def test_observations_stay_finite_and_bounded(losses, grads, interval, adam, gain):
    """With the per-update guard (``nonfinite="skip"``), whose warnings are exactly
    predictable: one when a NaN/inf loss or gradient element occurs, none otherwise."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": 1e-3, "weight_decay": 0.0}]
    opt = (
        torch.optim.Adam(groups, lr=1e-2) if adam else torch.optim.SGD(groups, lr=0.1, momentum=0.5)
    )
    policy = MlpStandInPolicy(hparams=HPARAMS, gain=gain)
    obs_space = FeatureExtractor.observation_space(policy.space)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched = TuningScheduler(
            policy, opt, total_steps=len(losses), control_interval=interval, nonfinite="skip"
        )
        for i, loss in enumerate(losses):
            g = grads[i % len(grads)]
            for p in model.parameters():
                p.grad = torch.full_like(p, g)
            opt.step()
            sched.step(loss, val_loss=loss if i % 3 == 2 else None)
            _check_optimizer(opt, policy.space)
    for obs in policy.observations:
        assert obs.dtype == np.float32 and np.isfinite(obs).all()
        assert obs_space.contains(obs[0]), obs
    non_finite = [x for x in losses if not math.isfinite(x)]
    # The guard skips updates with a NaN or inf gradient element (a finite 1e30 is
    # applied: it is a number) and backs off too; one warning in all.
    non_finite += [g for i in range(len(losses)) if not math.isfinite(g := grads[i % len(grads)])]
    backoff_warnings = [
        w
        for w in caught
        if "non-finite training loss" in str(w.message) or "non-finite gradient" in str(w.message)
    ]
    assert len(backoff_warnings) == (1 if non_finite else 0)
    assert len(policy.observations) == 1 + len(losses) // interval


@RUN_SETTINGS
@given(**RUNS)
@example(losses=[0.0], grads=[math.nan], interval=2, adam=False)  # no decision ever comes
@example(losses=[math.nan, 1.0], grads=[0.0], interval=1, adam=True)  # nothing to restore
def test_rollback_leaves_finite_parameters_at_every_decision(losses, grads, interval, adam):
    """The default ``nonfinite="rollback"``: whatever the losses and gradients, the
    parameters are finite right after every decision, the optimizer is never
    written a non-finite hyperparameter, and a run warns at most once."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = (
        torch.optim.Adam(model.parameters(), lr=1e-2)
        if adam
        else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    )
    policy = MlpStandInPolicy(hparams=HPARAMS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched = TuningScheduler(policy, opt, total_steps=len(losses), control_interval=interval)
        for i, loss in enumerate(losses):
            g = grads[i % len(grads)]
            for p in model.parameters():
                p.grad = torch.full_like(p, g)
            opt.step()
            decisions = len(sched.history)
            sched.step(loss)
            if len(sched.history) > decisions:
                assert all(p.isfinite().all() for p in model.parameters())
            _check_optimizer(opt, policy.space)
    # A non-finite loss always cuts the rate; parameters gone non-finite under finite
    # losses are caught at the next decision, which a short run may not reach.
    assert sched.n_backoffs >= (1 if any(not math.isfinite(x) for x in losses) else 0)
    assert len([w for w in caught if "non-finite" in str(w.message)]) <= 1
    assert all(np.isfinite(o).all() for o in policy.observations)


@settings(max_examples=20, deadline=None)
@given(
    losses=st.lists(values, min_size=2, max_size=8),
    start_lr=st.sampled_from([1e-30, 1e-6, 0.1, 10.0, 1e3]),
)
def test_extreme_starting_learning_rates_are_clipped_not_crashed(losses, start_lr):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=start_lr)
    policy = MlpStandInPolicy(hparams=("learning_rate",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = TuningScheduler(policy, opt, total_steps=len(losses), control_interval=1)
        for loss in losses:
            sched.step(loss)
    spec = policy.space["learning_rate"]
    assert spec.low <= sched.get_last_lr()[0] <= spec.high
    assert all(np.isfinite(o).all() for o in policy.observations)
