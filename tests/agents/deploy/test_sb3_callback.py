"""`TuningCallback` on a real stable-baselines3 PPO / A2C run on CartPole-v1."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback

from agents.deploy.sb3_callback import (
    LOSS_OFFSET,
    ControlledValue,
    TuningCallback,
    actor_parameters,
    gradient_steps_per_update,
)
from hpo_env.features import RUN_FEATURES, FeatureExtractor
from hpo_env.space import HyperparameterSpace, cosine_warmup
from tests.agents.support.scheduler_fixtures import (
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    random_tuning_policy,
)


class _InEffect(BaseCallback):
    """Records, right after every train(), the optimizer's lr and the model's ent_coef."""

    def __init__(self):
        super().__init__()
        self.lrs: list[float] = []
        self.ent_coefs: list[float] = []
        self._started = False

    def _on_rollout_start(self) -> None:
        if self._started:
            self.lrs.append(self.model.policy.optimizer.param_groups[0]["lr"])
        self._started = True

    def _on_training_end(self) -> None:
        self._on_rollout_start()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.ent_coefs.append(float(self.model.ent_coef))  # what the coming train() reads


def _ppo(**kwargs):
    return PPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=32,
        batch_size=32,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
        **kwargs,
    )


@pytest.mark.slow
def test_ppo_lr_and_ent_coef_follow_the_policy():
    actions = np.array(
        [[-1.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-0.5, 0.0], [0.0, 1.0]], dtype=np.float32
    )
    policy = ReplayPolicy(actions)
    model = _ppo(learning_rate=3e-4, ent_coef=0.01)
    callback = TuningCallback(policy, return_range=(0, 500), control_interval=2)
    probe = _InEffect()
    model.learn(256, callback=[callback, probe])  # 8 updates: decisions at 0, 2, 4, 6, 8
    assert isinstance(model.lr_schedule, ControlledValue)
    decided = [h["hyperparameters"] for h in callback.history]
    assert [h["update"] for h in callback.history] == [0, 2, 4, 6, 8]
    expected_lr = 3e-4 * 10 ** (0.5 * np.cumsum(actions[:, 0]))
    np.testing.assert_allclose([d["learning_rate"] for d in decided], expected_lr, rtol=1e-5)
    # Update u trains with the values decided before it.
    in_effect = [decided[u // 2] for u in range(8)]
    np.testing.assert_allclose(probe.lrs, [d["learning_rate"] for d in in_effect], rtol=1e-6)
    np.testing.assert_allclose(probe.ent_coefs, [d["entropy_coef"] for d in in_effect], rtol=1e-6)
    assert model.ent_coef == pytest.approx(decided[-1]["entropy_coef"])
    assert len(set(probe.lrs)) > 1 and len(set(probe.ent_coefs)) > 1
    # Observations: progress is num_timesteps / total, both hyperparameters present.
    obs = np.concatenate(policy.observations)
    np.testing.assert_allclose(
        obs[:, RUN_FEATURES.index("progress")], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6
    )
    assert np.isfinite(obs).all() and obs[1:, RUN_FEATURES.index("grad_cosine")].any()
    losses = [h["loss"] for h in callback.history[1:]]
    assert all(LOSS_OFFSET <= x <= 1 + LOSS_OFFSET for x in losses)
    pickle.dumps(model.lr_schedule)


def test_ppo_with_an_annealing_prior_gets_base_times_prior():
    """Zero actions under a cosine prior: update u trains with 3e-4 * cosine_warmup at the
    midpoint of its interval; the entropy coefficient (no prior) stays put."""
    space = HyperparameterSpace.from_names(
        ["learning_rate", "entropy_coef"], lr_prior="cosine_warmup"
    )
    policy = ReplayPolicy(np.zeros((5, 2), dtype=np.float32), hparams=space)
    model = _ppo(learning_rate=3e-4, ent_coef=0.01)
    callback = TuningCallback(policy, return_range=(0, 500), control_interval=2)
    probe = _InEffect()
    model.learn(256, callback=[callback, probe])  # 8 updates of 32 steps, decisions every 2
    midpoints = torch.tensor([(2 * (u // 2) + 1) / 8 for u in range(8)])
    expected = (3e-4 * cosine_warmup(midpoints)).clamp(min=1e-6)
    np.testing.assert_allclose(probe.lrs, expected.numpy(), rtol=1e-5)
    assert probe.ent_coefs == pytest.approx([0.01] * 8)
    # The policy still sees its own (base) value: the start rate, never annealed.
    position = FeatureExtractor.feature_names(space).index("learning_rate.position")
    obs = np.concatenate(policy.observations)
    assert np.ptp(obs[:, position]) == 0


def test_an_rl_prior_of_none_keeps_sb3s_rate_where_the_policy_holds_it():
    """A bundle whose RL runs have no prior: zero actions train every update at SB3's
    own 3e-4, where the supervised prior would anneal it."""
    space = HyperparameterSpace.from_names(
        ["learning_rate", "entropy_coef"], lr_prior="cosine_warmup", rl_lr_prior=None
    )
    policy = ReplayPolicy(np.zeros((5, 2), dtype=np.float32), hparams=space)
    model = _ppo(learning_rate=3e-4, ent_coef=0.01)
    callback = TuningCallback(policy, return_range=(0, 500), control_interval=2)
    probe = _InEffect()
    model.learn(256, callback=[callback, probe])
    assert probe.lrs == pytest.approx([3e-4] * 8, rel=1e-6)
    assert callback.space["learning_rate"].prior is None
    assert policy.space["learning_rate"].prior == "cosine_warmup"  # supervised runs keep it


def test_gradient_steps_per_update_counts_optimizer_steps():
    from stable_baselines3 import SAC

    assert gradient_steps_per_update(PPO("MlpPolicy", "CartPole-v1", device="cpu")) == 320
    assert gradient_steps_per_update(_ppo()) == 2  # 2 epochs of one 32-sample minibatch
    assert gradient_steps_per_update(A2C("MlpPolicy", "CartPole-v1", device="cpu")) == 1
    sac = SAC("MlpPolicy", "Pendulum-v1", gradient_steps=-1, train_freq=4, device="cpu")
    assert gradient_steps_per_update(sac) == 4
    sac = SAC("MlpPolicy", "Pendulum-v1", gradient_steps=3, device="cpu")
    assert gradient_steps_per_update(sac) == 3


def test_the_policy_reads_the_change_per_optimizer_step():
    """PPO's update is many optimizer steps; the observed update ratio is per step."""
    policy = ReplayPolicy(np.zeros((5, 2), dtype=np.float32))
    model = _ppo(learning_rate=3e-4, ent_coef=0.01)
    callback = TuningCallback(policy, return_range=(0, 500), control_interval=2)
    raw, seen = [], []

    def spy(method, into):
        depth = [0]  # end_interval_run calls itself once with autograd off: count the outer call

        def wrapped(*args, **kwargs):
            depth[0] += 1
            try:
                result = method(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                run = result if hasattr(result, "update_ratio") else args[0]
                into.append(run.update_ratio)
            return result

        return wrapped

    def on_start():
        TuningCallback._on_training_start(callback)
        callback.tracker.end_interval_run = spy(callback.tracker.end_interval_run, raw)
        callback.features.observe_run = spy(callback.features.observe_run, seen)

    callback._on_training_start = on_start
    model.learn(256, callback=callback)
    assert callback.steps_per_update == 2 and len(raw) == 4 and min(raw) > 0
    np.testing.assert_allclose(seen, np.array(raw) / 2)


def test_a2c_with_a_real_policy_and_default_interval():
    model = A2C(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=8,
        ent_coef=0.01,  # 0 (the default) is left alone: see test_sb3_control.py
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
    )
    callback = random_tuning_policy(decisions_per_run=4).sb3_callback()
    model.learn(128, callback=callback)  # 16 updates, 4 decisions after the first
    assert callback.control_interval == 4
    assert len(callback.history) == 5
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(
        callback.history[-2]["hyperparameters"]["learning_rate"], rel=1e-6
    )


def test_actor_parameters_leave_out_the_value_network():
    model = _ppo()
    names = {id(p): n for n, p in model.policy.named_parameters()}
    chosen = [names[id(p)] for p in actor_parameters(model.policy)]
    assert chosen and not any("value" in n for n in chosen)
    assert any(n.startswith("action_net") for n in chosen)


def test_control_family_offset_matches():
    from tasks.control import learner

    assert learner.LOSS_OFFSET == LOSS_OFFSET


def test_invalid_arguments():
    policy = random_tuning_policy()
    with pytest.raises(ValueError, match="return_range"):
        TuningCallback(policy, return_range=(1, 1))
    with pytest.raises(ValueError, match="control_interval"):
        TuningCallback(policy, control_interval=0)
    value = ControlledValue(0.1)
    assert value(0.3) == 0.1 and "0.1" in repr(value)
    torch.manual_seed(0)
