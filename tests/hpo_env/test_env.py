import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import hpo_env
from hpo_env import HPOEnv, RewardConfig, make_vec_env
from hpo_env.reward import progress_reward
from tests.hpo_env.tiny_task import TinyRegressionTask, TinySampler


def tiny_env(**kw):
    return HPOEnv(distribution=TinySampler(), **kw)


def test_env_passes_both_checkers_without_space_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(tiny_env(), skip_render_check=True)
        sb3_check_env(tiny_env(), warn=True)
    space_warnings = [w for w in caught if "space" in str(w.message).lower()]
    assert not space_warnings, [str(w.message) for w in space_warnings]


def test_episode_runs_to_budget_with_finite_observations():
    env = tiny_env()
    obs, info = env.reset(seed=3)
    assert info["task"] == "tiny_regression"
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, _truncated, info = env.step(np.zeros(2, dtype=np.float32))
        assert np.isfinite(obs).all() and env.observation_space.contains(obs)
        total += reward
        steps += 1
        if terminated:
            break
    assert steps == TinyRegressionTask().control_steps
    assert not info["diverged"]
    # The return telescopes to log(first_val / final_val).
    assert total == pytest.approx(info["episode_return"], rel=1e-5)
    assert total > 0  # constant sensible lr makes progress on this task


def test_absurd_learning_rate_terminates_with_finite_penalty():
    env = tiny_env()
    env.reset(seed=0)
    env.unwrapped.engine.run.set_hyperparameters({"learning_rate": torch.tensor([5.0])})
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(np.ones(2, dtype=np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward)
        if terminated:
            break
    assert terminated and not truncated and info["diverged"]
    assert reward <= -RewardConfig().divergence_penalty


def test_divergence_never_pays():
    first, prev = torch.tensor([1.0, 1.0]), torch.tensor([0.5, 3.0])
    reward = progress_reward(
        prev, torch.tensor([float("nan")] * 2), first, torch.tensor([True, True]), RewardConfig()
    )
    penalty = RewardConfig().divergence_penalty
    assert reward[0].item() == pytest.approx(-np.log(2.0) - penalty)  # gains taken back
    assert reward[1].item() == pytest.approx(-penalty)  # a run already worse still pays the penalty


def test_unclipped_reward_telescopes_through_a_spike():
    """A spike and its recovery earn nothing: the return is log(first / final) exactly."""
    first = torch.tensor([1.0])
    curve = [1.0, 0.5, 1e-4, 80.0, 0.4]  # includes steps far past the old +-5 clip
    total, prev = 0.0, first
    for v in curve[1:]:
        val = torch.tensor([v])
        total += progress_reward(prev, val, first, torch.tensor([False]), RewardConfig()).item()
        prev = val
    assert total == pytest.approx(np.log(1.0 / 0.4), rel=1e-5)


def test_same_seed_same_trajectory():
    def trace(seed):
        env = tiny_env()
        out = [env.reset(seed=seed)[0]]
        rng = np.random.default_rng(1)
        for _ in range(4):
            out.append(env.step(rng.uniform(-1, 1, 2).astype(np.float32))[0])
        return np.stack(out)

    assert np.array_equal(trace(7), trace(7))
    assert not np.array_equal(trace(7), trace(8))


def test_reset_options_are_validated():
    env = tiny_env()
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"tsak": "tiny_regression"})
    _obs, info = env.reset(
        seed=0, options={"task": "tiny_regression", "run_seed": 5, "val_every": 0}
    )
    assert info["run_seed"] == 5


def test_vec_env_sub_env_matches_single_env():
    task = TinyRegressionTask(dim=5)
    vec = make_vec_env(4, seed=11, distribution=TinySampler(), task=task)
    obs = vec.reset()
    seeds = vec.get_attr("run_seed")
    val_every = vec.get_attr("val_every")[0]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.5, 0.5, (task.control_steps, 4, 2)).astype(np.float32)
    vec_obs, vec_rew = [obs], []
    for a in actions:
        o, r, d, infos = vec.step(a)
        vec_obs.append(
            np.stack([i["terminal_observation"] if d[k] else o[k] for k, i in enumerate(infos)])
        )
        vec_rew.append(r)
    for i in range(4):
        env = tiny_env()
        o, _ = env.reset(
            seed=0, options={"task": task, "run_seed": seeds[i], "val_every": val_every}
        )
        np.testing.assert_allclose(o, vec_obs[0][i], atol=1e-5)
        for t, a in enumerate(actions):
            o, r, _term, _, _ = env.step(a[i])
            np.testing.assert_allclose(o, vec_obs[t + 1][i], atol=1e-4)
            assert r == pytest.approx(vec_rew[t][i], abs=1e-4)


def test_vec_env_auto_resets_per_sb3_conventions():
    vec = make_vec_env(6, seed=0, distribution=TinySampler())
    vec.reset()
    first_task_seeds = vec.get_attr("run_seed")
    rng = np.random.default_rng(0)
    saw_round_end = saw_divergence = False
    for _ in range(40):
        actions = rng.uniform(-1, 1, (6, 2)).astype(np.float32)
        actions[0] = 1.0  # keep pushing run 0 hot until it diverges
        obs, rewards, dones, infos = vec.step(actions)
        assert obs.shape == (6, vec.observation_space.shape[0]) and np.isfinite(obs).all()
        assert np.isfinite(rewards).all()
        for i in np.flatnonzero(dones):
            assert "terminal_observation" in infos[i]
            assert infos[i]["TimeLimit.truncated"] is False
            saw_divergence |= infos[i]["diverged"]
        saw_round_end |= bool(dones.all())
    assert saw_round_end and saw_divergence
    assert vec.get_attr("run_seed") != first_task_seeds


def test_vec_env_seed_then_reset_is_reproducible():
    def trace():
        vec = make_vec_env(3, seed=123, distribution=TinySampler())
        vec.seed(5)
        out = [vec.reset()]
        for _ in range(8):
            out.append(vec.step(np.full((3, 2), 0.3, dtype=np.float32))[0])
        return np.stack(out)

    assert np.array_equal(trace(), trace())


def test_vec_env_attribute_access():
    vec = make_vec_env(3, seed=0, distribution=TinySampler())
    vec.reset()
    assert vec.get_attr("task", indices=[0])[0].name == "tiny_regression"
    assert len(vec.get_attr("run_seed")) == 3
    assert vec.env_is_wrapped(gym.Wrapper) == [False] * 3
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vec.get_attr("nope")
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        make_vec_env(0, distribution=TinySampler())


def test_unknown_distribution_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'default'"):
        HPOEnv(distribution="defualt")


def test_registered_ids_exist():
    for env_id in ("hpo_env/HPO-v0", "hpo_env/HPO-heldout-v0"):
        assert env_id in gym.registry
        assert gym.registry[env_id].entry_point == "hpo_env.env:HPOEnv"
    assert hpo_env.FEATURE_SPEC_VERSION >= 1
