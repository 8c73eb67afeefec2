"""`DecisionClock`: the one place where a decision's timing and values are made."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo_env.clock import DecisionClock, prior_position
from hpo_env.space import HyperparameterSpace


def _space(prior: str | None = "cosine_warmup") -> HyperparameterSpace:
    return HyperparameterSpace.from_names(["learning_rate", "momentum"], lr_prior=prior)


def test_the_prior_is_read_at_the_coming_interval_midpoint():
    clock = DecisionClock(_space(), total_steps=100, control_interval=10)
    assert clock.position(0) == 0.05
    assert clock.position(40) == 0.45
    assert clock.position(95) == 1.0  # an interval past the budget reads the end
    # One budget per run (the environment's restarted runs): elementwise.
    per_run = clock.position(np.array([0, 3]), total_steps=np.array([10, 4]))
    assert per_run.tolist() == pytest.approx([0.5, 1.0])
    assert prior_position(np.array([1]), 1, np.array([4]))[0] == 0.375


def test_one_run_and_the_batch_give_the_same_bits():
    """`decide_one` (the deployed float32 path) equals `decide` on one run, bit for bit."""
    rng = np.random.default_rng(0)
    space = _space()
    for steps_done in (0, 7, 33, 49):
        clock = DecisionClock(space, total_steps=50, control_interval=1)
        values = {
            "learning_rate": np.float32(10 ** rng.uniform(-4, 0)),
            "momentum": np.float32(0.9),
        }
        action = rng.uniform(-1, 1, size=2).astype(np.float32)
        one = clock.decide_one(values, action, steps_done=steps_done)
        batch = clock.decide(
            {k: torch.tensor([float(v)]) for k, v in values.items()},
            torch.as_tensor(action[None, :]),
            steps_done=steps_done,
        )
        for name in values:
            assert np.float32(one.chosen[name]) == batch.chosen[name].item()
            assert np.float32(one.in_effect[name]) == batch.in_effect[name].item()
        assert one.position == batch.position


def test_the_policy_keeps_its_own_value_and_the_run_gets_the_annealed_one():
    clock = DecisionClock(_space(), total_steps=10, control_interval=1)
    late = clock.decide_one({"learning_rate": 0.1, "momentum": 0.5}, [0.0, 0.0], steps_done=9)
    assert late.chosen["learning_rate"] == np.float32(0.1)  # a zero action keeps the value
    assert late.in_effect["learning_rate"] < 0.01  # cosine near its end
    assert late.in_effect["momentum"] == pytest.approx(0.5)  # no prior on momentum
    plain = DecisionClock(_space(prior=None), total_steps=10)
    flat = plain.decide_one({"learning_rate": 0.1, "momentum": 0.5}, [0.0, 0.0], steps_done=9)
    assert flat.in_effect["learning_rate"] == pytest.approx(0.1)


def test_runs_without_a_hyperparameter_skip_it_and_bad_input_is_named():
    clock = DecisionClock(_space(), total_steps=10)
    out = clock.decide({"learning_rate": torch.tensor([0.1, 0.2])}, torch.zeros(2, 2), 0)
    assert set(out.chosen) == {"learning_rate"} and out.in_effect["learning_rate"].shape == (2,)
    with pytest.raises(ValueError, match=r"expected 2 components \['learning_rate', 'momentum'\]"):
        clock.decide_one({"learning_rate": 0.1}, [0.0], steps_done=0)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        DecisionClock(_space(), total_steps=0)
    with pytest.raises(ValueError, match="control_interval must be >= 1"):
        DecisionClock(_space(), total_steps=5, control_interval=0)
