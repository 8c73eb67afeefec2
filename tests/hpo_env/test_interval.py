"""`run_interval`: the one control interval every driver shares."""

from __future__ import annotations

import math

import numpy as np
import torch

from hpo_env.interval import run_interval, validation_seen
from hpo_env.reward import RewardConfig, episode_return, objective_of
from tests.hpo_env.tiny_task import TinyRegressionTask


def _interval(lrs, seen=True):
    run = TinyRegressionTask().build([1, 2])
    first = run.evaluate().clone()
    out = run_interval(
        run,
        5,
        first_val=first,
        progress=torch.full((2,), 0.5),
        seen=torch.tensor([seen, False]),
        decision={"learning_rate": torch.tensor(lrs)},
    )
    return run, first, out


def test_applies_the_decision_trains_and_measures():
    _, first, out = _interval([0.05, 0.05])
    assert torch.equal(out.stats.hparams["learning_rate"], torch.tensor([0.05, 0.05]))
    assert (out.val < first).all(), "five SGD steps at a sane rate lower validation loss"
    assert out.stats.val_loss[0] == out.val[0] and math.isnan(out.stats.val_loss[1])
    assert torch.equal(out.stats.progress, torch.full((2,), 0.5))
    assert not out.diverged.any()


def test_absurd_rate_counts_as_diverged_and_objective_is_the_bound():
    _, first, out = _interval([1e6, 0.05])
    assert out.diverged.tolist() == [True, False]
    objective, diverged = objective_of(
        out.val.numpy(), first.numpy(), out.diverged.numpy(), RewardConfig()
    )
    assert diverged.tolist() == [True, False]
    assert objective[0] == first[0].item() * RewardConfig().divergence_factor
    assert objective[1] == out.val[1].item()


def test_validation_cadence():
    assert validation_seen(3, 0, 2).tolist() == [False, False]
    assert validation_seen(4, 2, 3).tolist() == [True, True, True]
    assert validation_seen(np.array([1, 2]), 2, 2).tolist() == [False, True]


def test_episode_return_telescopes_and_charges_divergence():
    config = RewardConfig(divergence_penalty=1.0)
    first = np.array([2.0, 2.0])
    curve = np.array([[1.5, 1.0], [1.0, np.inf]])
    objective = np.array([1.0, 200.0])
    ret = episode_return(
        first, curve, objective, np.array([False, True]), np.array([-1, 1]), config
    )
    assert ret[0] == np.log(2.0)
    # Diverged after gaining log 2: the gain is taken back and the penalty charged.
    assert ret[1] == -1.0
