"""The registered environments on the real default task distribution."""

import resource
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import hpo_env
from hpo_env import make_vec_env


@pytest.mark.parametrize("env_id", ["hpo_env/HPO-v0", "hpo_env/HPO-heldout-v0"])
def test_registered_env_passes_both_checkers(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(gym.make(env_id).unwrapped, warn=True)
    space_warnings = [w for w in caught if "space" in str(w.message).lower()]
    assert not space_warnings, [str(w.message) for w in space_warnings]


def test_control_task_can_be_forced_and_default_draws_both_kinds():
    env = gym.make("hpo_env/HPO-v0").unwrapped
    _, info = env.reset(seed=0, options={"task": "control_cartpole"})
    assert info["family"] == "control_cartpole"
    families = {env.engine.sampler.sample(np.random.default_rng(s)).family for s in range(40)}
    assert "control_cartpole" in families
    assert families - {"control_cartpole"}, families


@pytest.mark.slow
def test_vec_env_64_random_actions_200_steps_finite_and_survives_divergence():
    vec = make_vec_env(64, seed=3, distribution_kwargs={"control_weight": 0.0})
    obs = vec.reset()
    rng = np.random.default_rng(0)
    n_diverged = 0
    for _ in range(200):
        actions = rng.uniform(-1, 1, (64, len(hpo_env.DEFAULT_HPARAMS))).astype(np.float32)
        actions[:8, 0] = 1.0  # a few runs pushed hot every step, so some diverge
        obs, rewards, _dones, infos = vec.step(actions)
        assert np.isfinite(obs).all() and np.isfinite(rewards).all()
        assert vec.observation_space.contains(obs[0])
        n_diverged += sum(info["diverged"] for info in infos)
    assert n_diverged > 0


@pytest.mark.slow
def test_vec_env_256_runs_100_steps_within_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vec = make_vec_env(256, seed=0, distribution_kwargs={"control_weight": 0.0})
    obs = vec.reset()
    for _ in range(100):
        obs, _rewards, _dones, _infos = vec.step(np.zeros((256, 2), dtype=np.float32))
        assert np.isfinite(obs).all()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 4096, f"256 sub-environments grew the process by {grown_mib:.0f} MiB"
