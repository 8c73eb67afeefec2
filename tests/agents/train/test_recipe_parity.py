"""Levers 1-2 keep the product's invariant: the deployed scheduler sees what the
environment showed the policy (run-relative features, twins in the batched run),
and a version-3 bundle loads and deploys with the version it records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.deploy.scheduler import TuningScheduler
from agents.policy.bundle import FeatureSpecMismatchError
from agents.policy.tuning_policy import TuningPolicy
from hpo_env import RewardConfig
from hpo_env.env import HPOEnv
from hpo_env.features import RUN_RELATIVE_SPEC_VERSION, FeatureExtractor
from hpo_env.space import HyperparameterSpace
from tests.agents.deploy.test_scheduler_parity import _digits_task, _OneTask
from tests.agents.support.scheduler_fixtures import (
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    random_tuning_policy,
)

V3 = RUN_RELATIVE_SPEC_VERSION
SPACE = HyperparameterSpace.from_names(["learning_rate", "entropy_coef"], lr_prior="cosine_warmup")


class ReplayV3(ReplayPolicy):
    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs, spec_version=V3)


def _env_obs(task, actions, paired):
    env = HPOEnv(
        distribution=_OneTask(task),
        hparams=SPACE,
        feature_spec_version=V3,
        reward_config=RewardConfig(paired=paired),
    )
    obs, _ = env.reset(seed=0, options={"task": task, "run_seed": 5, "val_every": 2})
    out = [obs]
    for action in actions:
        obs, _, terminated, _, _ = env.step(action)
        out.append(obs)
        if terminated:
            break
    return np.stack(out)


def _deployed_obs(task, actions):
    run = task.make_torch_run(5)
    policy = ReplayV3(actions, hparams=SPACE)
    k = task.updates_per_step
    sched = TuningScheduler(
        policy, run.optimizer, total_steps=task.control_steps * k, control_interval=k
    )
    for t in range(task.control_steps * k):
        x, y = run.next_batch()
        loss = run.loss_fn(run.model(x), y)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        decision = (t + 1) // k
        measured = (t + 1) % k == 0 and decision % 2 == 0
        sched.step(loss.item(), val_loss=run.val_loss() if measured else None)
    return np.concatenate(policy.observations)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_run_relative_features_deployed_equal_the_environment_with_twins(optimizer):
    task = _digits_task(optimizer, control_steps=6)
    actions = np.random.default_rng(3).uniform(-1, 1, size=(6, 2)).astype(np.float32)
    env_obs = _env_obs(task, actions, paired=True)
    assert env_obs.shape[1] == FeatureExtractor.observation_size(SPACE, V3)
    np.testing.assert_array_equal(env_obs, _env_obs(task, actions, paired=False))
    dep_obs = _deployed_obs(task, actions)
    assert env_obs.shape == dep_obs.shape
    assert np.abs(env_obs - dep_obs).max() < 1e-4


def _v3_policy() -> TuningPolicy:
    base = random_tuning_policy()
    contents = base.contents
    names = FeatureExtractor.feature_names(base.space, V3)
    drop = [i for i, n in enumerate(contents.metadata["feature_names"]) if n.endswith(".position")]
    keep = [i for i in range(len(contents.metadata["feature_names"])) if i not in drop]
    contents.weights["layers.0.weight"] = contents.weights["layers.0.weight"][:, keep]
    contents.metadata.update(feature_spec_version=V3, feature_names=names)
    for key in ("mean", "var"):
        contents.normalization[key] = [contents.normalization[key][i] for i in keep]
    return TuningPolicy(contents)


def test_a_version_3_bundle_round_trips_and_deploys_with_its_version(tmp_path):
    policy = _v3_policy()
    path = policy.save(tmp_path / "v3")
    loaded = TuningPolicy.load(path)
    assert loaded.feature_spec_version == V3
    fx = loaded.feature_extractor(1)
    assert fx.spec_version == V3
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(loaded, opt, total_steps=40, control_interval=4)
    for _ in range(40):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())
    assert np.isfinite(opt.param_groups[0]["lr"])
    assert sched.features.spec_version == V3


def test_names_that_do_not_match_the_recorded_version_are_refused(tmp_path):
    policy = random_tuning_policy()
    contents = policy.contents
    contents.metadata["feature_spec_version"] = V3  # but version 2's names and sizes
    with pytest.raises(FeatureSpecMismatchError, match="feature names"):
        TuningPolicy(contents).save(tmp_path / "bad")
