"""`HPOVecEnv(task_groups=G)`: the sub-envs split into G groups, each with its own task."""

import numpy as np
import pytest

from hpo_env import RewardConfig, make_vec_env
from hpo_env.errors import ConfigError
from tests.hpo_env.tiny_task import TinySampler


def vec(**kw):
    return make_vec_env(6, seed=5, distribution=TinySampler(dims=(2, 3, 4, 5, 6, 7)), **kw)


def rollout(env, steps=14):
    obs = [env.reset()]
    rewards, tasks = [], set()
    for _ in range(steps):
        env.step_async(np.zeros((env.num_envs, 2), dtype=np.float32))
        o, r, _, _ = env.step_wait()
        obs.append(o)
        rewards.append(r)
        tasks.update((g, e.task.dim) for g, e in enumerate(env.engines))
    return np.stack(obs), np.stack(rewards), tasks


def test_one_group_is_todays_env():
    a, b = vec(), vec(task_groups=1)
    assert len(b.engines) == 1 and b.engine is b.engines[0]
    for x, y in zip(rollout(a)[:2], rollout(b)[:2]):
        np.testing.assert_array_equal(x, y)


def test_groups_train_their_own_tasks_with_today_shapes():
    env = vec(task_groups=3)
    obs, rewards, tasks = rollout(env)
    assert obs.shape == (15, 6, env.observation_space.shape[0])
    assert rewards.shape == (14, 6)
    assert [e.n_runs for e in env.engines] == [2, 2, 2]
    # Over 14 decisions (rounds of 6) the groups drew more than one task between them.
    assert len({dim for _, dim in tasks}) > 1
    assert env.get_attr("run_seed", [4])[0] == env.engines[2].run_seeds[0]
    assert env.get_attr("task", [0])[0] is env.engines[0].task


def test_groups_are_deterministic_and_combine_with_twins():
    a = rollout(vec(task_groups=2, reward_config=RewardConfig(paired=True)))
    b = rollout(vec(task_groups=2, reward_config=RewardConfig(paired=True)))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.all(a[1] == 0.0)  # action 0 everywhere: every run ties its twin


@pytest.mark.parametrize("groups", [0, 4, 7])
def test_groups_must_divide_the_envs(groups):
    with pytest.raises(ConfigError, match="task_groups"):
        vec(task_groups=groups)
