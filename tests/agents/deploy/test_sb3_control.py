"""`TuningCallback` controls what each SB3 algorithm *uses* in its update, refuses
what it cannot control in one line, and leaves a user's ``ent_coef=0`` alone."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO, SAC

from agents.deploy.sb3_callback import TuningCallback
from hpo_env.errors import ConfigError
from hpo_env.features import FeatureExtractor
from tests.agents.support.scheduler_fixtures import (
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
)

ACTIONS = np.array([[-1.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-0.5, 0.0], [0.0, 1.0]], np.float32)


def _small() -> dict:
    # Fresh each time: SB3 adds keys to the policy_kwargs dict it is given.
    return {"seed": 0, "device": "cpu", "policy_kwargs": {"net_arch": [8]}}


def _record_what_train_uses(model, optimizer_of, entropy_of) -> list[tuple[float, float]]:
    """Wrap ``model.train``: the entropy coefficient it reads and the lr it applies."""
    used: list[tuple[float, float]] = []
    train = model.train

    def recording_train(*args, **kwargs):
        entropy = entropy_of(model)  # what this update's loss will read
        train(*args, **kwargs)
        used.append((optimizer_of(model).param_groups[0]["lr"], entropy))  # set by train()

    model.train = recording_train
    return used


def _expected(callback, n_updates, interval):
    decided = [h["hyperparameters"] for h in callback.history]
    return [
        (decided[u // interval]["learning_rate"], decided[u // interval]["entropy_coef"])
        for u in range(n_updates)
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: A2C("MlpPolicy", "CartPole-v1", n_steps=8, ent_coef=0.01, **_small()),
        lambda: PPO(
            "MlpPolicy",
            "CartPole-v1",
            n_steps=16,
            batch_size=16,
            n_epochs=1,
            ent_coef=0.01,
            **_small(),
        ),
    ],
    ids=["a2c", "ppo"],
)
def test_on_policy_updates_use_the_decided_lr_and_ent_coef(make):
    model = make()
    used = _record_what_train_uses(model, lambda m: m.policy.optimizer, lambda m: m.ent_coef)
    callback = TuningCallback(ReplayPolicy(ACTIONS), return_range=(0, 500), control_interval=2)
    model.learn(8 * model.n_steps, callback=callback)
    assert len(used) == 8
    np.testing.assert_allclose(used, _expected(callback, 8, 2), rtol=1e-6)
    assert len({e for _, e in used}) > 1 and len({lr for lr, _ in used}) > 1


def test_sac_updates_use_the_decided_lr_and_its_own_ent_coef_tensor():
    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=0,
        train_freq=2,
        gradient_steps=1,
        batch_size=8,
        buffer_size=256,
        ent_coef=0.05,
        **_small(),
    )
    used = _record_what_train_uses(
        model, lambda m: m.actor.optimizer, lambda m: float(m.ent_coef_tensor)
    )
    callback = TuningCallback(ReplayPolicy(ACTIONS), return_range=(-1600, 0), control_interval=2)
    model.learn(16, callback=callback)  # 8 rollouts of 2 steps, one train() each
    assert len(used) == 8
    np.testing.assert_allclose(used, _expected(callback, 8, 2), rtol=1e-6)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(used[-1][0])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: DQN("MlpPolicy", "CartPole-v1", learning_starts=0, **_small()),
            "no entropy coefficient",
        ),
        (lambda: SAC("MlpPolicy", "Pendulum-v1", ent_coef="auto", **_small()), "tunes it itself"),
    ],
    ids=["dqn", "sac-auto"],
)
def test_what_it_cannot_control_is_refused_in_one_line(make, match):
    with pytest.raises(ConfigError, match=match) as info:
        make().learn(4, callback=TuningCallback(ReplayPolicy(ACTIONS)))
    assert "\n" not in str(info.value)


def test_a_users_zero_ent_coef_stays_zero():
    model = A2C("MlpPolicy", "CartPole-v1", n_steps=8, ent_coef=0.0, **_small())
    used = _record_what_train_uses(model, lambda m: m.policy.optimizer, lambda m: m.ent_coef)
    policy = ReplayPolicy(ACTIONS)
    callback = TuningCallback(policy, control_interval=2)
    with pytest.warns(UserWarning, match="ent_coef=0.0 is left as you set it"):
        model.learn(32, callback=callback)
    assert {e for _, e in used} == {0.0} and model.ent_coef == 0.0
    assert len({lr for lr, _ in used}) > 1  # the learning rate is still controlled
    present = FeatureExtractor.feature_names(policy.space).index("entropy_coef.present")
    assert all(obs[0][present] == 0.0 for obs in policy.observations)


def test_episode_long_rollouts_still_get_a_decision_per_share_of_the_budget():
    """SAC with ``train_freq=(1, "episode")``: one update per episode, whose length the
    callback cannot know up front; it decides by environment steps (>= 20 per run)."""
    import gymnasium as gym

    from tests.agents.support.scheduler_fixtures import random_tuning_policy

    env = gym.make("Pendulum-v1", max_episode_steps=50)
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=0,
        train_freq=(1, "episode"),
        batch_size=8,
        buffer_size=512,
        ent_coef=0.05,
        **_small(),
    )
    used = _record_what_train_uses(
        model, lambda m: m.actor.optimizer, lambda m: float(m.ent_coef_tensor)
    )
    callback = TuningCallback(random_tuning_policy(decisions_per_run=50), return_range=(-1600, 0))
    model.learn(2000, callback=callback)  # 40 episodes, 40 updates
    assert len(used) == 40
    assert len(callback.history) >= 20
    decided_lrs = {h["hyperparameters"]["learning_rate"] for h in callback.history}
    assert {lr for lr, _ in used} <= decided_lrs  # every update used a decided rate
