"""`TuningScheduler`: torch scheduler conventions, optimizers, groups, bounds, resume."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from agents.deploy.scheduler import DEFAULT_DECISIONS_PER_RUN, TuningScheduler
from hpo_env.features import RUN_FEATURES, FeatureExtractor
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    random_tuning_policy,
)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _train(model, opt, sched, n_steps: int, start: int = 0, val_every: int = 0):
    for i in range(start, start + n_steps):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(16, 4, generator=g)
        loss = (model(x) - x.sum(1, keepdim=True)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        val = loss.item() if val_every and (i + 1) % val_every == 0 else None
        sched.step(loss.item(), val_loss=val)


def _column(policy, name: str) -> int:
    return FeatureExtractor.feature_names(policy.space).index(name)


def test_first_decision_comes_before_any_update():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = ReplayPolicy(np.array([[-1.0, 0.0]]))
    sched = TuningScheduler(policy, opt, total_steps=20, control_interval=5)
    assert len(policy.observations) == 1
    assert sched.get_last_lr() == pytest.approx([0.1 * 10**-0.5])
    obs = policy.observations[0][0]
    assert obs[RUN_FEATURES.index("progress")] == 0.0
    # Supervised optimizers have no entropy coefficient: its features read "absent".
    assert obs[_column(policy, "entropy_coef.present")] == 0.0
    assert obs[_column(policy, "learning_rate.present")] == 1.0
    _train(model, opt, sched, 20)
    assert len(policy.observations) == 5
    assert [h["step"] for h in sched.history] == [0, 5, 10, 15, 20]
    assert policy.observations[-1][0][RUN_FEATURES.index("progress")] == pytest.approx(1.0)


def test_control_interval_defaults_to_decisions_per_run():
    opt = torch.optim.SGD(_model().parameters(), lr=0.1)
    assert (
        TuningScheduler(
            random_tuning_policy(decisions_per_run=20), opt, total_steps=1000
        ).control_interval
        == 50
    )
    sched = TuningScheduler(random_tuning_policy(decisions_per_run=None), opt, total_steps=1000)
    assert sched.control_interval == 1000 // DEFAULT_DECISIONS_PER_RUN
    assert (
        TuningScheduler(MlpStandInPolicy(decisions_per_run=10), opt, total_steps=5).control_interval
        == 1
    )
    with pytest.warns(UserWarning, match="decides only once"):
        TuningScheduler(MlpStandInPolicy(), opt, total_steps=5, control_interval=10)


@pytest.mark.parametrize(
    ("make", "momentum_of"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5), lambda g: g["momentum"]),
        (lambda p: torch.optim.Adam(p, lr=1e-3), lambda g: g["betas"][0]),
        (lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01), lambda g: g["betas"][0]),
        (lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.1), lambda g: g["momentum"]),
    ],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_optimizers_get_every_controlled_hyperparameter(make, momentum_of):
    model = _model()
    opt = make(model.parameters())
    actions = np.tile([[0.5, -1.0, 1.0, 0.3]], (10, 1)).astype(np.float32)
    policy = ReplayPolicy(
        actions, hparams=("learning_rate", "momentum", "weight_decay", "entropy_coef")
    )
    lr0, mom0, wd0 = (
        opt.param_groups[0]["lr"],
        momentum_of(opt.param_groups[0]),
        opt.param_groups[0]["weight_decay"],
    )
    sched = TuningScheduler(policy, opt, total_steps=12, control_interval=4)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(lr0 * 10**0.25, rel=1e-6)
    assert momentum_of(group) == pytest.approx(max(mom0 - 0.1, 0.0), abs=1e-6)
    # As in the environment, a zero weight decay times any factor clips to the lower bound.
    expected_wd = wd0 * 10**0.5 if wd0 > 0 else policy.space["weight_decay"].low
    assert group["weight_decay"] == pytest.approx(expected_wd, rel=1e-6)
    _train(model, opt, sched, 12)
    assert all(math.isfinite(p.sum().item()) for p in model.parameters())
    obs = policy.observations[-1][0]
    assert obs[_column(policy, "momentum.present")] == 1.0
    assert obs[_column(policy, "entropy_coef.present")] == 0.0
    assert sched.controlled == ("learning_rate", "momentum", "weight_decay")


def test_param_groups_keep_their_ratios_within_bounds():
    model = _model()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[2].parameters(), "lr": 0.01},
        ],
        lr=0.1,
    )
    policy = ReplayPolicy(np.array([[-1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32))
    sched = TuningScheduler(policy, opt, total_steps=6, control_interval=2)
    lrs = sched.get_last_lr()
    assert lrs[1] / lrs[0] == pytest.approx(0.1, rel=1e-5)
    _train(model, opt, sched, 6)
    lrs = sched.get_last_lr()
    assert lrs[0] == pytest.approx(0.1 * 10 ** (0.5 * (-1 + 1 + 1 + 1)), rel=1e-5)  # 4 decisions
    assert lrs[1] / lrs[0] == pytest.approx(0.1, rel=1e-5)

    # Each group is clipped to the bundle's bounds on its own.
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 1.0},
            {"params": model[2].parameters(), "lr": 5.0},
        ],
        lr=1.0,
    )
    policy = ReplayPolicy(np.ones((5, 2), dtype=np.float32))
    sched = TuningScheduler(policy, opt, total_steps=4, control_interval=1)
    _train(model, opt, sched, 4)
    high = policy.space["learning_rate"].high
    assert max(sched.get_last_lr()) <= high
    assert sched.get_last_lr()[1] == pytest.approx(high)


def test_latest_validation_loss_of_an_interval_is_observed():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    policy = ReplayPolicy(np.zeros((5, 2), dtype=np.float32))
    sched = TuningScheduler(policy, opt, total_steps=12, control_interval=4)
    fresh = RUN_FEATURES.index("val_fresh")
    _train(model, opt, sched, 4)  # no validation
    assert policy.observations[-1][0][fresh] == 0.0
    assert math.isnan(sched.history[-1]["val_loss"])
    sched.step(1.0, val_loss=3.0)
    sched.step(1.0, val_loss=2.0)
    sched.step(1.0)
    sched.step(1.0)
    assert policy.observations[-1][0][fresh] == 1.0
    assert sched.history[-1]["val_loss"] == 2.0
    sched.step(torch.tensor(1.0))
    assert sched.steps_done == 9


def test_non_finite_loss_backs_off_without_writing_nan():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = ReplayPolicy(np.zeros((10, 2), dtype=np.float32))
    sched = TuningScheduler(policy, opt, total_steps=100, control_interval=4)
    with pytest.warns(UserWarning, match="non-finite training loss") as record:
        sched.step(float("nan"))
        sched.step(float("inf"))  # once per interval
        for _ in range(6):
            sched.step(float("nan"))
    assert sum("non-finite" in str(w.message) for w in record) == 1
    assert sched.get_last_lr()[0] == pytest.approx(0.001, rel=1e-5)
    assert sched.n_backoffs == 2
    assert np.isfinite(policy.observations[-1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(40):
            sched.step(float("-inf"))
    assert sched.get_last_lr()[0] == pytest.approx(policy.space["learning_rate"].low)


def test_invalid_arguments_are_reported():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = MlpStandInPolicy()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        TuningScheduler(policy, model, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        TuningScheduler(policy, opt, total_steps=0)
    with pytest.raises(ValueError, match="control_interval"):
        TuningScheduler(policy, opt, total_steps=10, control_interval=0)
    bad = torch.optim.SGD(model.parameters(), lr=0.1)
    bad.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="learning_rate"):
        TuningScheduler(policy, bad, total_steps=10)
    sched = TuningScheduler(policy, opt, total_steps=2, control_interval=1)
    with pytest.warns(UserWarning, match="more than total_steps"):
        for _ in range(3):
            sched.step(1.0)


@pytest.mark.parametrize("make", [torch.optim.SGD, torch.optim.Adam], ids=["sgd", "adam"])
def test_state_dict_round_trip_continues_identically(make, tmp_path):
    n = 7  # resume mid-interval

    def fresh(seed: int = 0):
        model = _model(seed)
        opt = make(
            [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}],
            lr=1e-2,
        )
        sched = random_tuning_policy(hparams=("learning_rate", "momentum")).scheduler(
            opt, total_steps=4 * n, control_interval=3
        )
        return model, opt, sched

    model, opt, sched = fresh()
    _train(model, opt, sched, 2 * n, val_every=5)
    straight = (sched.get_last_lr(), sched.history, sched.last_obs)

    model, opt, sched = fresh()
    _train(model, opt, sched, n, val_every=5)
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, path
    )
    model, opt, sched = fresh(seed=1)  # different weights, then restored
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    _train(model, opt, sched, n, start=n, val_every=5)
    assert sched.get_last_lr() == straight[0]
    assert str(sched.history) == str(straight[1])
    np.testing.assert_array_equal(sched.last_obs, straight[2])


def test_load_state_dict_rejects_another_setup():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = random_tuning_policy().scheduler(opt, total_steps=10).state_dict()
    other = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = random_tuning_policy(hparams=("learning_rate", "momentum")).scheduler(
        other, total_steps=10
    )
    with pytest.raises(ValueError, match="controlled"):
        sched.load_state_dict(state)


class _RecordingRun:
    def __init__(self):
        self.logged: list[tuple[dict, int | None]] = []

    def log(self, metrics, step=None, commit=None):
        self.logged.append((dict(metrics), step))


def test_wandb_logging_and_plot(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run = _RecordingRun()
    sched = random_tuning_policy().scheduler(opt, total_steps=20, control_interval=5, wandb_run=run)
    _train(model, opt, sched, 20, val_every=10)
    logged = [m for m, _ in run.logged]
    # 5 decisions, then the plot at the last one (no close() needed).
    assert len(logged) == 6 and "schedule/learning_rate_plot" in logged[-1]
    assert all("schedule/learning_rate" in m for m in logged[:5])
    assert sum("schedule/val_loss" in m for m in logged) == 2
    sched.close()
    sched.close()
    assert len(run.logged) == 6
    out = sched.plot(tmp_path / "sub" / "schedule.png")
    assert out.endswith("schedule.png")
    assert (tmp_path / "sub" / "schedule.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["schedule.png"]
    assert "TuningScheduler(steps=20/20" in repr(sched)
