"""The batched A2C learner as a `BatchedRun`: contract, isolation, learning."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from hpo_env.protocol import BatchedRun, Task
from tasks.control import (
    ACROBOT_DEFAULT,
    CARTPOLE_DEFAULT,
    LOSS_OFFSET,
    ActorCriticConfig,
    ControlTask,
)

SMALL = dataclasses.replace(
    CARTPOLE_DEFAULT,
    learner=ActorCriticConfig(
        n_envs=4, n_steps=4, hidden=(16, 16), n_eval_envs=2, eval_max_steps=50
    ),
)


def test_task_and_run_implement_the_protocols() -> None:
    assert isinstance(SMALL, Task)
    assert pickle.loads(pickle.dumps(SMALL)) == SMALL
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMALL.system = "acrobot"  # type: ignore[misc]
    run = SMALL.build([0, 1, 2])
    assert isinstance(run, BatchedRun)
    assert run.n_runs == 3 and run.hparam_names == ("learning_rate", "entropy_coef")
    stats = run.train(3)
    assert stats.n_updates == 3 and stats.n_runs == 3
    for name in (
        "train_loss",
        "train_loss_std",
        "grad_norm",
        "grad_cosine",
        "update_ratio",
        "episode_return",
    ):
        assert torch.isfinite(getattr(stats, name)).all(), name
    assert ((stats.train_loss > 0) & (stats.train_loss <= 1 + LOSS_OFFSET)).all()
    assert (stats.grad_cosine == 0).all()  # first interval
    assert torch.isnan(stats.val_loss).all() and torch.isnan(stats.progress).all()
    assert set(stats.hparams) == {"learning_rate", "entropy_coef"}
    assert (run.train(1).grad_cosine != 0).any()
    val = run.evaluate()
    assert val.dtype == torch.float32 and val.shape == (3,)
    assert ((val >= LOSS_OFFSET) & (val <= 1 + LOSS_OFFSET)).all()
    assert torch.equal(val, run.evaluate())  # evaluation is deterministic


def test_initial_hyperparameters_spread_around_the_defaults() -> None:
    run = SMALL.build(list(range(64)))
    lr = torch.log10(run.get_hyperparameters()["learning_rate"] / SMALL.default_learning_rate)
    spread = SMALL.learning_rate_log10_spread
    assert lr.min() >= -spread and lr.max() <= spread and lr.max() - lr.min() > spread
    ent = torch.log10(run.get_hyperparameters()["entropy_coef"] / SMALL.default_entropy_coef)
    assert ent.abs().max() <= 0.5 + 1e-6


def test_set_hyperparameters_validates() -> None:
    run = SMALL.build([0, 1])
    run.set_hyperparameters({"learning_rate": torch.tensor([1e-3, 2e-3])})
    assert torch.allclose(run.get_hyperparameters()["learning_rate"], torch.tensor([1e-3, 2e-3]))
    with pytest.raises(ValueError, match="momentum"):
        run.set_hyperparameters({"momentum": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        run.set_hyperparameters({"learning_rate": torch.zeros(3)})


def _trace(task: ControlTask, seeds: list[int], n_intervals: int = 3) -> list[torch.Tensor]:
    run = task.build(seeds)
    out = []
    for _ in range(n_intervals):
        stats = run.train(2)
        out += [stats.train_loss, stats.grad_norm, stats.update_ratio, run.evaluate()]
    return [torch.stack([t[i] for t in out]) for i in range(len(seeds))]


def test_run_depends_only_on_its_seed() -> None:
    batch = _trace(SMALL, [11, 22, 33])
    alone = _trace(SMALL, [22])
    torch.testing.assert_close(batch[1], alone[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_reset_runs_equals_a_fresh_build() -> None:
    run = SMALL.build([1, 2, 3])
    run.train(2)
    run.reset_runs([1], [7])
    fresh = SMALL.build([7])
    a, b = run.train(2), fresh.train(2)
    torch.testing.assert_close(a.train_loss[1:2], b.train_loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.grad_norm[1:2], b.grad_norm, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(run.evaluate()[1:2], fresh.evaluate(), rtol=1e-4, atol=1e-5)


def test_a_diverged_run_does_not_touch_the_others() -> None:
    clean, broken = SMALL.build([4, 5, 6]), SMALL.build([4, 5, 6])
    broken.params[0] = float("nan")
    hot = {"learning_rate": torch.tensor([1e3, 1e-3, 1e-3])}
    clean.set_hyperparameters(hot)
    broken.set_hyperparameters(hot)
    a, b = clean.train(3), broken.train(3)  # must not raise
    assert torch.isnan(b.grad_norm[0]) and torch.isnan(b.train_loss[0])
    torch.testing.assert_close(a.grad_norm[1:], b.grad_norm[1:])
    torch.testing.assert_close(a.train_loss[1:], b.train_loss[1:])
    val = broken.evaluate()
    assert torch.isnan(val[0]) and torch.equal(val[1:], clean.evaluate()[1:])


def test_acrobot_runs() -> None:
    task = dataclasses.replace(ACROBOT_DEFAULT, learner=SMALL.learner)
    run = task.build([0, 1])
    stats = run.train(2)
    assert torch.isfinite(stats.grad_norm).all()
    assert torch.isfinite(run.evaluate()).all()


def test_learning_improves_cartpole_quickly() -> None:
    """~12k environment steps per run double a random policy's return (~22 steps)."""
    run = CARTPOLE_DEFAULT.build([0, 1])
    run.set_hyperparameters(
        {"learning_rate": torch.full((2,), 3e-3), "entropy_coef": torch.full((2,), 0.01)}
    )
    for _ in range(12):
        stats = run.train(8)
    assert (stats.episode_return * 500 > 45).all(), stats.episode_return * 500


@pytest.mark.slow
def test_cartpole_reaches_195_for_most_seeds() -> None:
    """At its default learning rate the learner reaches mean return >= 195 on CartPole.

    A property over 16 seeds with a margin: which run learns depends on the CPU's
    kernels (8 of 8 seeds of one set reached 195 on an AMD CPU's AVX2 path, 6 of 8
    under ``ATEN_CPU_CAPABILITY=default``; 61 of 64 over four sets and both paths)."""
    seeds = list(range(16))
    run = CARTPOLE_DEFAULT.build(seeds)
    default = CARTPOLE_DEFAULT.default_hparams()
    run.set_hyperparameters({k: torch.full((len(seeds),), v) for k, v in default.items()})
    best = torch.zeros(len(seeds))
    for _ in range(CARTPOLE_DEFAULT.control_steps):  # one meta-episode: 40 x 8 updates, ~41k steps
        stats = run.train(CARTPOLE_DEFAULT.updates_per_step)
        best = torch.maximum(best, stats.episode_return * 500)
    # "Reaches": A2C at a constant rate peaks and then oscillates (room for a controller).
    assert (best >= 195).sum() >= 10, best


def test_subsample_evaluation_plays_the_first_episodes_of_the_full_set() -> None:
    """A quarter of 8 evaluation episodes are the 2 episodes a 2-episode task plays."""
    learner = dataclasses.replace(SMALL.learner, n_eval_envs=8, min_eval_subsample=1)
    eight = dataclasses.replace(SMALL, learner=learner)
    run_8, run_2 = eight.build([5, 6]), SMALL.build([5, 6])
    run_8.train(2)
    run_2.train(2)
    assert torch.equal(run_8.evaluate(0.25), run_2.evaluate())
    both = run_8.evaluate_prefixes((1.0, 0.25))
    assert torch.equal(both[0], run_8.evaluate()) and torch.equal(both[1], run_2.evaluate())


def test_default_control_evaluation_is_never_subsampled() -> None:
    run = CARTPOLE_DEFAULT.build([1])
    run.train(1)
    assert torch.equal(run.evaluate(0.25), run.evaluate())
