from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.benchmark.config import EVAL_SEED_BASE, eval_seeds
from agents.controllers.learned import PolicyController
from agents.controllers.rollout import RolloutResult, rollout
from hpo_env.episodes import EpisodeEngine
from hpo_env.space import HyperparameterSpace
from tests.agents.support.policies import SamplerOf, StandInPolicy
from tests.hpo_env.tiny_task import TinyRegressionTask


class RecordingController(PolicyController):
    def __init__(self, policy):
        super().__init__(policy)
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def decide(self, stats):
        out = super().decide(stats)
        self.observations.append(self.last_obs.numpy().copy())
        return out


@pytest.mark.parametrize(
    ("val_every", "prior"), [(1, None), (2, None), (0, None), (1, "cosine_warmup")]
)
def test_policy_controller_observations_equal_episode_engine(val_every, prior):
    task = TinyRegressionTask()
    policy = StandInPolicy(seed=3)
    policy.space = HyperparameterSpace.from_names(policy.space.names, lr_prior=prior)
    seeds = [11, 12, 13]
    controller = RecordingController(policy)
    result = rollout(controller, task, seeds, val_every=val_every)

    engine = EpisodeEngine(SamplerOf(task), policy.space, n_runs=len(seeds))
    obs = engine.start_round(
        np.random.default_rng(0), task=task, run_seeds=seeds, val_every=val_every
    )
    engine_obs = [obs]
    for _ in range(task.control_steps - 1):
        obs = engine.step(policy.act(obs)).obs
        engine_obs.append(obs)
    assert len(controller.observations) == task.control_steps
    for ours, theirs in zip(controller.observations, engine_obs):
        np.testing.assert_array_equal(ours, theirs)
    if prior is not None:  # the last interval is annealed to (almost) nothing
        lrs = result.hparams["learning_rate"]
        assert np.all(lrs[:, -1] < 0.05 * lrs[:, task.control_steps // 2])


def test_rollout_shapes_and_trajectories():
    task = TinyRegressionTask()
    seeds = eval_seeds(4)
    result = rollout(PolicyController(StandInPolicy()), task, seeds, initial_lr=0.02)
    assert isinstance(result, RolloutResult)
    t = task.control_steps
    assert result.val_curve.shape == (4, t) and result.train_curve.shape == (4, t)
    assert result.hparams["learning_rate"].shape == (4, t)
    assert result.final_objective.shape == (4,) and np.isfinite(result.final_objective).all()
    assert result.diverged.dtype == bool and not result.diverged.any()
    # The first decision moves the lr from the given start by at most 10**0.5.
    ratio = result.hparams["learning_rate"][:, 0] / 0.02
    assert np.all((ratio >= 10**-0.5 - 1e-6) & (ratio <= 10**0.5 + 1e-6))
    assert result.to_dict()["seeds"] == seeds


def test_diverged_runs_rank_last_with_a_finite_value():
    class Hot:
        name = "hot"

        def reset(self, context):
            self.n = context.n_runs

        def decide(self, stats):
            return {"learning_rate": torch.full((self.n,), 5.0)}

    result = rollout(Hot(), TinyRegressionTask(), [1, 2])
    assert result.diverged.all()
    assert np.isfinite(result.final_objective).all()
    np.testing.assert_allclose(result.final_objective, result.first_val * 100.0)
    assert (result.diverged_at >= 0).all()


def test_eval_seeds_are_disjoint_from_meta_training_seeds():
    seeds = eval_seeds(3, offset=5)
    assert min(seeds) >= EVAL_SEED_BASE > 2**31 - 2
    with pytest.raises(ValueError, match="n_seeds"):
        eval_seeds(0)


def test_rollout_rejects_bad_arguments():
    with pytest.raises(ValueError, match="val_every"):
        rollout(PolicyController(StandInPolicy()), TinyRegressionTask(), [1], val_every=-1)
    with pytest.raises(ValueError, match="initial_lr"):
        rollout(PolicyController(StandInPolicy()), TinyRegressionTask(), [1], initial_lr=0.0)
    with pytest.raises(TypeError, match="feature_extractor"):
        PolicyController(object())
