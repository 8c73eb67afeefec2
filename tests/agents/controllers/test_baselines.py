from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from agents.benchmark.methods import DEFAULT_METHODS, MethodSpec, check_methods, select_methods
from agents.controllers.adaptive import (
    HypergradientController,
    HypergradientLR,
    PlateauController,
    PlateauRule,
    torch_plateau,
)
from agents.controllers.protocol import RolloutContext
from agents.controllers.rollout import rollout
from agents.controllers.schedules import (
    ConstantController,
    ConstantSchedule,
    CosineSchedule,
    ScheduleController,
    StepDecaySchedule,
    default_constant_hparams,
)
from hpo_env.stats import StepStats
from tests.hpo_env.tiny_task import TinyRegressionTask


def context(n=2, lr=0.1, steps=10, k=5):
    return RolloutContext(
        task=TinyRegressionTask(),
        n_runs=n,
        control_steps=steps,
        updates_per_step=k,
        val_every=1,
        initial_hparams={"learning_rate": torch.full((n,), lr)},
        first_val=torch.ones(n),
    )


def stats(n=2, val=float("nan"), cos=0.0):
    ones = torch.ones(n)
    return StepStats(
        train_loss=ones,
        train_loss_std=0 * ones,
        grad_norm=ones,
        grad_cosine=torch.full((n,), cos),
        update_ratio=ones * 1e-3,
        n_updates=5,
        val_loss=torch.full((n,), val),
    )


def test_cosine_starts_at_base_and_hits_the_floor_at_the_end():
    s = CosineSchedule()
    assert s.torch_lr(0, 100, 0.1) == pytest.approx(0.1)
    assert s.torch_lr(50, 100, 0.1) == pytest.approx(0.05)
    assert s.torch_lr(100, 100, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert CosineSchedule(final_ratio=0.01).torch_lr(100, 100, 0.1) == pytest.approx(1e-3)
    values = [s(p) for p in np.linspace(0, 1, 11)]
    assert (np.diff(values) <= 0).all()


def test_step_decay_factors():
    s = StepDecaySchedule(milestones=(0.5, 0.75), gamma=0.1)
    assert [s(p) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert ConstantSchedule()(0.7) == 1.0
    with pytest.raises(ValueError, match="milestones"):
        StepDecaySchedule(milestones=(0.8, 0.2))
    with pytest.raises(ValueError, match="final_ratio"):
        CosineSchedule(final_ratio=2.0)


def test_torch_scheduler_adapter_follows_torch_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = CosineSchedule().torch_scheduler(opt, total_steps=8)
    for step in range(8):
        assert opt.param_groups[0]["lr"] == pytest.approx(CosineSchedule().torch_lr(step, 8, 0.2))
        opt.step()
        sched.step()
    pickle.dumps(sched.state_dict())


def test_schedule_controller_uses_interval_midpoints():
    task = TinyRegressionTask()
    result = rollout(ScheduleController(CosineSchedule()), task, [1, 2], initial_lr=0.05)
    t = task.control_steps
    expected = [0.05 * CosineSchedule()((i + 0.5) / t) for i in range(t)]
    np.testing.assert_allclose(result.hparams["learning_rate"][0], expected, rtol=1e-6)
    assert result.method == "cosine"


def test_plateau_rule_matches_torch_reduce_lr_on_plateau():
    rule = PlateauRule(factor=0.5, patience=2, threshold=1e-3, cooldown=1, min_lr=1e-4)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    reference = torch_plateau(opt, rule)
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    lr = torch.tensor([0.1])
    rule.reset(1)
    for m in metrics:
        reference.step(m)
        lr = rule.update(torch.tensor([m]), lr)
        assert float(lr[0]) == pytest.approx(opt.param_groups[0]["lr"])
    assert float(lr[0]) < 0.1


def test_plateau_controller_reduces_after_patience_and_ignores_missing_validation():
    c = PlateauController(factor=0.5, patience=2)
    c.reset(context())
    assert torch.allclose(c.decide(None)["learning_rate"], torch.tensor(0.1))
    for val in (1.0, 1.0, 1.0):  # best, bad 1, bad 2: not yet
        lr = c.decide(stats(val=val))["learning_rate"]
    assert torch.allclose(lr, torch.tensor(0.1))
    lr = c.decide(stats())["learning_rate"]  # no validation: no count
    assert torch.allclose(lr, torch.tensor(0.1))
    lr = c.decide(stats(val=1.0))["learning_rate"]  # bad 3 > patience
    assert torch.allclose(lr, torch.tensor(0.05))


def test_batched_hypergradient_moves_lr_with_the_gradient_cosine():
    c = HypergradientController(beta=0.02)
    c.reset(context(k=5))
    assert torch.allclose(c.decide(None)["learning_rate"], torch.tensor(0.1))
    up = c.decide(stats(cos=1.0))["learning_rate"]
    assert torch.allclose(up, torch.tensor(0.1 * math.exp(0.1)))
    down = c.decide(stats(cos=-1.0))["learning_rate"]
    assert torch.allclose(down, torch.tensor(0.1), atol=1e-7)
    c.decide(stats(cos=float("nan")))  # a NaN cosine changes nothing
    assert torch.isfinite(c._lr).all()


@pytest.mark.parametrize("multiplicative", [False, True])
def test_torch_hypergradient_moves_lr_the_right_way_on_a_quadratic(multiplicative):
    # f(x) = 0.5 * x^2: lr << 1 gives aligned successive gradients (raise lr),
    # 1 < lr < 2 makes the iterate oscillate (lower lr).
    for start, direction in ((0.01, 1), (1.5, -1)):
        x = torch.nn.Parameter(torch.tensor([3.0]))
        opt = torch.optim.SGD([x], lr=start)
        hd = HypergradientLR(
            opt, beta=0.01 if multiplicative else 0.05, multiplicative=multiplicative
        )
        for _ in range(5):
            opt.zero_grad()
            (0.5 * x.square()).sum().backward()
            hd.step()
            opt.step()
        assert (opt.param_groups[0]["lr"] - start) * direction > 0


def test_torch_hypergradient_with_adam_runs_and_stays_positive():
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = torch.optim.Adam([x], lr=1e-2)
    hd = HypergradientLR(opt, beta=1e-3)
    for _ in range(10):
        opt.zero_grad()
        (0.5 * x.square()).sum().backward()
        hd.step()
        opt.step()
    assert opt.param_groups[0]["lr"] > 1e-2  # aligned directions: lr grows


@pytest.mark.parametrize(
    "obj",
    [
        ConstantSchedule(),
        CosineSchedule(0.1),
        StepDecaySchedule((0.3, 0.6), 0.5),
        ScheduleController(CosineSchedule()),
        ConstantController({"learning_rate": 0.1}),
        PlateauController(),
        HypergradientController(),
        PlateauRule(),
    ],
)
def test_baselines_pickle_and_repr(obj):
    clone = pickle.loads(pickle.dumps(obj))
    assert repr(clone) == repr(obj)
    assert type(obj).__name__ in repr(obj)


def test_hypergradient_lr_pickles_with_its_optimizer():
    x = torch.nn.Parameter(torch.zeros(2))
    hd = HypergradientLR(torch.optim.SGD([x], lr=0.1))
    assert "HypergradientLR(beta=0.001" in repr(pickle.loads(pickle.dumps(hd)))


def test_methods_are_objects_selected_by_name_at_the_edge():
    assert [m.name for m in DEFAULT_METHODS] == [
        "constant_default",
        "cosine",
        "step_decay",
        "plateau",
        "hypergradient",
    ]
    assert [m.name for m in select_methods(["plateau", "cosine"], DEFAULT_METHODS)] == [
        "plateau",
        "cosine",
    ]
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        select_methods(["cosin"], DEFAULT_METHODS)
    with pytest.raises(ValueError, match="duplicated \\['cosine'\\]"):
        check_methods([*DEFAULT_METHODS, DEFAULT_METHODS[1]])
    with pytest.raises(ValueError, match="reserved \\['policy'\\]"):
        check_methods([MethodSpec("policy", factory=lambda task: None)])


def test_constant_default_uses_task_defaults_and_sb3_defaults_for_control():
    class Control:
        family = "cartpole_control"

    assert default_constant_hparams(Control()) == {"learning_rate": 3e-4, "entropy_coef": 0.0}
    assert default_constant_hparams(TinyRegressionTask()) == {}
