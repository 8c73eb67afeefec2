"""Issue 8: an absurd learning rate ends the episode as `terminated`, with a
finite penalty and ``info["diverged"]``, on every task family."""

import numpy as np
import pytest
import torch

from hpo_env import HPOEnv, RewardConfig
from tasks.distribution import list_tasks, task_by_name

# One representative task per family (train and held-out variants).
FAMILY_TASKS = sorted({name.split(":")[0]: name for name in list_tasks()}.values())
SATURATING_FAMILIES = ("char_gru", "char_lstm")
"""Recurrent nets trained by Adam/AdamW: gates saturate and Adam's steps are bounded by
the rate, so an absurd rate ruins the run without ever passing the divergence bound
(100 decisions at lr=10 stayed finite and below it). The reward charges them through
progress instead; `test_absurd_learning_rate_ruins_saturating_runs` checks that."""
DIVERGING_TASKS = [t for t in FAMILY_TASKS if t.split(":")[0] not in SATURATING_FAMILIES]
SATURATING_TASKS = [t for t in FAMILY_TASKS if t.split(":")[0] in SATURATING_FAMILIES]


@pytest.mark.slow
@pytest.mark.parametrize("task_name", DIVERGING_TASKS)
def test_absurd_learning_rate_terminates_with_finite_penalty(task_name):
    task = task_by_name(task_name)
    env = HPOEnv(split="heldout" if task_name.endswith(":heldout") else "train")
    obs, _ = env.reset(seed=0, options={"task": task, "val_every": 1})
    # 1e3 is clipped to the space's upper bound at the first decision (10): still absurd.
    # The engine applies actions to the values the policy controls (its base), not to
    # whatever the run holds, so both are set.
    env.engine.run.set_hyperparameters({"learning_rate": torch.tensor([1e3])})
    env.engine.base_hparams["learning_rate"] = torch.tensor([1e3])
    rewards = []
    for _ in range(task.control_steps):
        obs, reward, terminated, truncated, info = env.step(np.ones(2, dtype=np.float32))
        assert np.isfinite(obs).all() and env.observation_space.contains(obs)
        assert np.isfinite(reward)
        rewards.append(reward)
        if terminated:
            break
    assert terminated and not truncated
    assert info["diverged"], f"{task_name} did not diverge at lr={info['hparams']}"
    assert rewards[-1] <= -RewardConfig().divergence_penalty


@pytest.mark.parametrize("task_name", SATURATING_TASKS)
def test_absurd_learning_rate_ruins_saturating_runs(task_name):
    """lr=10 on a saturating recurrent run: finite observations, and negative rewards
    over the first decisions (the loss rises) where the default rate's are positive."""
    task = task_by_name(task_name)
    returns = {}
    for lr in (task.default_hparams()["learning_rate"], 1e3):
        env = HPOEnv(split="heldout" if task_name.endswith(":heldout") else "train")
        env.reset(seed=0, options={"task": task, "val_every": 1})
        env.engine.run.set_hyperparameters({"learning_rate": torch.tensor([lr])})
        env.engine.base_hparams["learning_rate"] = torch.tensor([lr])
        total = 0.0
        for _ in range(4):
            obs, reward, terminated, _, _ = env.step(np.zeros(2, dtype=np.float32))
            assert np.isfinite(obs).all() and np.isfinite(reward)
            total += float(reward)
            if terminated:
                break
        returns[lr] = total
    default_return, absurd_return = returns.values()
    assert absurd_return < 0 < default_return, returns
