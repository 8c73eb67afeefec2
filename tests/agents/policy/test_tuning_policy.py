"""`TuningPolicy`: equals the trained PPO actor exactly, loads shipped bundles by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import TuningPolicy
from agents.policy.bundle import BundleNotFoundError
from agents.policy.tuning_policy import shipped_bundle_names
from agents.train.config import get_preset
from agents.train.export import export_bundle
from agents.train.trainer import make_model, make_normalized_env, make_train_env
from tests.agents.support.train_distribution import TINY_DISTRIBUTION


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny PPO model that has learnt a little (non-trivial weights and obs stats)."""
    torch.set_num_threads(1)
    config = get_preset(
        "smoke",
        distribution=TINY_DISTRIBUTION,
        n_envs=4,
        n_steps=16,
        batch_size=32,
        net_arch=(16, 8),
    )
    env = make_normalized_env(config, make_train_env(config))
    model = make_model(config, env)
    model.learn(128)
    path = tmp_path_factory.mktemp("bundle") / "policy"
    control = {"decisions_per_run": 6, "updates_per_step": 3}
    export_bundle(
        path, model, env, config, control, {"win_rate": 0.5}, {"num_timesteps": 128}, "test"
    )
    # Observations from the environment itself (statistics frozen as exported),
    # plus extreme ones that hit the clip.
    env.training = False
    obs = [env.get_original_obs()]
    for _ in range(5):
        env.step(np.zeros((4, 2), dtype=np.float32))
        obs.append(env.get_original_obs())
    obs.append(np.full((1, obs[0].shape[1]), 10.0, dtype=np.float32))
    obs.append(np.full((1, obs[0].shape[1]), -10.0, dtype=np.float32))
    return model, env, path, np.concatenate(obs).astype(np.float32)


def test_act_equals_ppo_predict_on_normalized_obs(trained):
    model, env, path, obs = trained
    policy = TuningPolicy.load(path)
    expected, _ = model.predict(env.normalize_obs(obs), deterministic=True)
    actual = policy.act(obs, deterministic=True)
    assert actual.shape == expected.shape == (obs.shape[0], 2)
    np.testing.assert_array_equal(actual, np.clip(expected, -1, 1))
    np.testing.assert_array_equal(policy.normalize(obs), env.normalize_obs(obs))


def test_single_observation_and_shape_errors(trained):
    _, _, path, obs = trained
    policy = TuningPolicy.load(path)
    np.testing.assert_array_equal(policy.act(obs[0]), policy.act(obs[:1])[0])
    n_features = policy.normalize(obs).shape[1]
    with pytest.raises(ValueError, match=rf"shape \[B, {n_features}\]"):
        policy.act(np.zeros((2, 5), dtype=np.float32))


def test_stochastic_actions_are_seeded_and_bounded(trained):
    _, _, path, obs = trained
    policy = TuningPolicy.load(path)
    policy.seed(3)
    a = policy.act(obs, deterministic=False)
    policy.seed(3)
    b = policy.act(obs, deterministic=False)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(a) <= 1.0)


def test_save_round_trip(trained, tmp_path: Path):
    _, _, path, obs = trained
    policy = TuningPolicy.load(path)
    policy.save(tmp_path / "copy")
    again = TuningPolicy.load(tmp_path / "copy")
    np.testing.assert_array_equal(again.act(obs), policy.act(obs))
    assert again.metadata == policy.metadata


def test_metadata_and_feature_extractor(trained):
    _, _, path, _ = trained
    policy = TuningPolicy.load(path)
    assert policy.space.names == ("learning_rate", "entropy_coef")
    assert policy.decisions_per_run == 6
    fx = policy.feature_extractor(n_runs=3)
    obs = fx.reset({"learning_rate": torch.full((3,), 0.1)})
    assert obs.shape == (3, policy.observation_size)
    assert policy.act(obs.numpy()).shape == (3, 2)
    for key in ("command", "git_revision", "package_version", "created", "config", "seed"):
        assert key in policy.metadata


def test_unknown_bundle_name_suggests_closest():
    assert "default" in shipped_bundle_names()
    with pytest.raises(BundleNotFoundError, match="did you mean 'default'"):
        TuningPolicy.load("defualt")


def test_shipped_default_bundle_loads():
    assert "default" in shipped_bundle_names(), (
        "the package must ship agents/policy/bundles/default"
    )
    policy = TuningPolicy.load("default")
    fx = policy.feature_extractor(1)
    obs = fx.reset({"learning_rate": torch.tensor([0.05])}).numpy()
    action = policy.act(obs)
    assert action.shape == (1, len(policy.space)) and np.all(np.abs(action) <= 1)
    assert policy.decisions_per_run is not None and policy.decisions_per_run >= 1


@pytest.mark.skipif(
    importlib.util.find_spec("agents.deploy.scheduler") is None, reason="no agents.scheduler"
)
def test_scheduler_factory_returns_a_tuning_scheduler(trained):
    from agents.deploy.scheduler import TuningScheduler

    _, _, path, _ = trained
    policy = TuningPolicy.load(path)
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    assert isinstance(policy.scheduler(optimizer, total_steps=100), TuningScheduler)
