"""The invariant that makes meta-training transfer: on the same run, the deployed
`TuningScheduler` (plain PyTorch twin + `StatsTracker`) sees the observations
`HPOEnv` produced (batched engine), action for action."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import tasks.supervised.digits as digits
from agents.deploy.scheduler import TuningScheduler
from hpo_env.env import HPOEnv
from hpo_env.features import FeatureExtractor
from hpo_env.space import HyperparameterSpace
from tests.agents.support.scheduler_fixtures import (
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
)

HPARAM_SETS = {
    "lr+entropy": ("learning_rate", "entropy_coef"),
    "lr+momentum+wd": ("learning_rate", "momentum", "weight_decay"),
}
TOLERANCE = 1e-4


class _OneTask:
    def __init__(self, task):
        self.task = task

    def sample(self, rng):
        return self.task


def _digits_task(optimizer: str, control_steps: int = 8, updates_per_step: int = 5):
    try:
        from tasks.distribution import task_by_name

        task = task_by_name("digits_mlp")
    except (ImportError, ValueError, KeyError):
        task = digits.DigitsMlpFamily().sample_task(np.random.default_rng(0), "train")
    return dataclasses.replace(
        task, optimizer=optimizer, control_steps=control_steps, updates_per_step=updates_per_step
    )


def _env_observations(task, hparams, actions, run_seed, val_every=1):
    env = HPOEnv(distribution=_OneTask(task), hparams=hparams)
    obs, _ = env.reset(seed=0, options={"task": task, "run_seed": run_seed, "val_every": val_every})
    observations, lrs = [obs], []
    for action in actions:
        obs, _, terminated, _, info = env.step(action)
        observations.append(obs)
        lrs.append(info["hparams"]["learning_rate"])
        if terminated:
            break
    return np.stack(observations), lrs


def _scheduler_observations(task, hparams, actions, run_seed, val_every=1):
    run = task.make_torch_run(run_seed)
    policy = ReplayPolicy(actions, hparams=hparams)
    k = task.updates_per_step
    sched = TuningScheduler(
        policy, run.optimizer, total_steps=task.control_steps * k, control_interval=k
    )
    lrs = []
    for t in range(task.control_steps * k):
        if t % k == 0:
            lrs.append(run.optimizer.param_groups[0]["lr"])
        x, y = run.next_batch()
        loss = run.loss_fn(run.model(x), y)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        decision = (t + 1) // k
        measured = (t + 1) % k == 0 and val_every > 0 and decision % val_every == 0
        sched.step(loss.item(), val_loss=run.val_loss() if measured else None)
    return np.concatenate(policy.observations), lrs


def _assert_same(env_obs, dep_obs, hparams):
    space = hparams if isinstance(hparams, HyperparameterSpace) else None
    names = FeatureExtractor.feature_names(space or HyperparameterSpace.from_names(hparams))
    assert env_obs.shape == dep_obs.shape
    diff = np.abs(env_obs - dep_obs)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() < TOLERANCE, (
        f"observation {worst[0]}, feature {names[worst[1]]!r}: env={env_obs[worst]:.6g} "
        f"deployed={dep_obs[worst]:.6g}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("hparam_set", sorted(HPARAM_SETS))
def test_deployed_observations_match_environment(optimizer, hparam_set):
    hparams = HPARAM_SETS[hparam_set]
    task = _digits_task(optimizer)
    actions = np.random.default_rng(1).uniform(-1, 1, size=(task.control_steps, len(hparams)))
    env_obs, env_lrs = _env_observations(task, hparams, actions.astype(np.float32), run_seed=7)
    dep_obs, dep_lrs = _scheduler_observations(
        task, hparams, actions.astype(np.float32), run_seed=7
    )
    np.testing.assert_allclose(dep_lrs, env_lrs, rtol=1e-6)
    _assert_same(env_obs, dep_obs, hparams)


@pytest.mark.parametrize("val_every", [2, 0])
def test_parity_with_sparse_or_no_validation(val_every):
    hparams = HPARAM_SETS["lr+entropy"]
    task = _digits_task("adam", control_steps=6)
    actions = (
        np.random.default_rng(2).uniform(-1, 1, size=(task.control_steps, 2)).astype(np.float32)
    )
    env_obs, _ = _env_observations(task, hparams, actions, run_seed=3, val_every=val_every)
    dep_obs, _ = _scheduler_observations(task, hparams, actions, run_seed=3, val_every=val_every)
    _assert_same(env_obs, dep_obs, hparams)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_parity_with_an_annealing_prior(optimizer):
    """With a prior the run receives ``base * cosine_warmup(midpoint)`` in the env and
    in the deployed scheduler alike, and both show the policy its base value."""
    space = HyperparameterSpace.from_names(HPARAM_SETS["lr+entropy"], lr_prior="cosine_warmup")
    task = _digits_task(optimizer, control_steps=6)
    actions = np.random.default_rng(5).uniform(-1, 1, size=(6, 2)).astype(np.float32)
    env_obs, env_lrs = _env_observations(task, space, actions, run_seed=5)
    dep_obs, dep_lrs = _scheduler_observations(task, space, actions, run_seed=5)
    np.testing.assert_allclose(dep_lrs, env_lrs, rtol=1e-6)
    _assert_same(env_obs, dep_obs, space)
    # Zero actions: the rates are the start rate times the prior, interval by interval.
    start = task.make_torch_run(5).optimizer.param_groups[0]["lr"]
    _, lrs = _scheduler_observations(task, space, np.zeros((6, 2), np.float32), run_seed=5)
    midpoints = (np.arange(6) + 0.5) / 6
    expected = [float(np.float32(start) * np.float32(f)) for f in _cosine(midpoints)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)


def _cosine(progress, warmup=0.05):
    decay = 0.5 * (1 + np.cos(np.pi * (progress - warmup) / (1 - warmup)))
    return np.where(progress < warmup, progress / warmup, decay)


def test_engine_reports_first_loss_of_interval():
    """hpo_env/stats.py: ``train_loss_first`` is the first of the K losses. Without it the
    engine's runs take the first interval's *mean* loss as their loss scale while the
    deployed tracker takes the true first loss, and ``log_train_ratio`` / ``train_slope``
    differ between meta-training and deployment."""
    task = _digits_task("sgd", control_steps=1, updates_per_step=4)
    stats = task.build([0]).train(task.updates_per_step)
    assert not torch.equal(stats.train_loss_first, stats.train_loss)


def _supervised_task_names() -> list[str]:
    try:
        from tasks.distribution import list_tasks, task_by_name
    except ImportError:
        return []
    return [n for n in list_tasks() if hasattr(task_by_name(n), "make_torch_run")]


@pytest.mark.slow
@pytest.mark.parametrize("name", _supervised_task_names())
def test_parity_on_every_supervised_task(name):
    from tasks.distribution import task_by_name

    task = task_by_name(name)
    task = dataclasses.replace(
        task, control_steps=4, updates_per_step=min(task.updates_per_step, 6)
    )
    hparams = HPARAM_SETS["lr+momentum+wd"]
    actions = (
        np.random.default_rng(4).uniform(-1, 1, size=(task.control_steps, 3)).astype(np.float32)
    )
    env_obs, _ = _env_observations(task, hparams, actions, run_seed=11)
    dep_obs, _ = _scheduler_observations(task, hparams, actions, run_seed=11)
    _assert_same(env_obs, dep_obs, hparams)
