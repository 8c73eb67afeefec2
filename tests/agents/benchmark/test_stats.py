from __future__ import annotations

import numpy as np
import pytest

from agents.benchmark.config import BenchmarkConfig
from agents.benchmark.stats import bootstrap_ci, iqm, strict_wins
from agents.benchmark.work import grid_lrs_for, sweep_lrs_for
from agents.controllers.learned import PolicyController
from agents.controllers.rollout import StackedController, rollout
from agents.controllers.schedules import ConstantController, CosineSchedule, ScheduleController
from tests.agents.support.policies import StandInPolicy, TinyTaskWithDefaults


def test_iqm_is_the_mean_of_the_middle_half():
    assert float(iqm(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]))) == pytest.approx(4.5)
    assert float(iqm(np.array([3.0]))) == 3.0
    np.testing.assert_allclose(
        iqm(np.array([[1, 2, 3, 4], [10, 20, 30, 40.0]]), axis=-1), [2.5, 25.0]
    )


def test_strict_wins_never_count_a_tie():
    policy = np.array([[1.0, 2.0], [3.0, 5.0]])
    baseline = np.array([[2.0, 2.0], [1.0, 6.0]])
    # Strict: the tie scores 0, like a loss (never half a win).
    np.testing.assert_array_equal(strict_wins(policy, baseline), [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="equal shapes"):
        strict_wins(policy, baseline[0])


def test_bootstrap_ci_is_reproducible_and_covers_the_estimate():
    rng = np.random.default_rng(1)
    table = rng.lognormal(0.0, 0.3, size=(6, 5))
    lo, hi = bootstrap_ci(table, iqm, n_boot=500, seed=3)
    assert (lo, hi) == bootstrap_ci(table, iqm, n_boot=500, seed=3)
    assert lo <= float(iqm(table.reshape(-1))) <= hi
    assert bootstrap_ci(np.ones((3, 2)), np.mean, n_boot=50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="tasks, seeds"):
        bootstrap_ci(np.ones(3))


def test_grid_and_sweep_values():
    config = BenchmarkConfig(grid_size=15, grid_decades=(-2.0, 1.5))
    grid = grid_lrs_for(TinyTaskWithDefaults(default_lr=0.05), config)
    assert (
        len(grid) == 15
        and min(grid) == pytest.approx(5e-4)
        and max(grid) == pytest.approx(0.05 * 10**1.5)
    )
    assert any(np.isclose(grid, 0.05))  # the default is on the grid
    assert sweep_lrs_for(TinyTaskWithDefaults(default_lr=0.05), config) == pytest.approx(
        [1e-4, 1e-3, 1e-2, 1e-1, 1]
    )
    assert sweep_lrs_for(TinyTaskWithDefaults(default_lr=3e-3), config) == pytest.approx(
        [1e-4, 1e-3, 1e-2, 1e-1, 1]
    )
    assert sweep_lrs_for(TinyTaskWithDefaults(default_lr=3e-4), config) == pytest.approx(
        [1e-5, 1e-4, 1e-3, 1e-2, 0.1]
    )


def test_config_validation():
    with pytest.raises(ValueError, match="backend"):
        BenchmarkConfig(backend="rey")
    with pytest.raises(ValueError, match="straddle"):
        BenchmarkConfig(grid_decades=(0.5, 1.0))
    with pytest.warns(UserWarning, match="grid_size"):
        BenchmarkConfig(grid_size=4)
    with pytest.raises(TypeError, match="n_seeds"):
        BenchmarkConfig(n_seeds="3")  # type: ignore[arg-type]


def test_stacked_controller_equals_separate_rollouts():
    task = TinyTaskWithDefaults()
    seeds = [5, 6]
    controllers = [
        lambda: ScheduleController(CosineSchedule()),
        lambda: ConstantController({"learning_rate": 0.02}),
        lambda: PolicyController(StandInPolicy(seed=1)),
    ]
    stacked = StackedController([make() for make in controllers], [2, 2, 2])
    whole = rollout(stacked, task, seeds * 3, initial_lr=0.05)
    for i, make in enumerate(controllers):
        alone = rollout(make(), task, seeds, initial_lr=0.05)
        np.testing.assert_allclose(
            whole.final_objective[2 * i : 2 * i + 2], alone.final_objective, rtol=1e-5
        )
        np.testing.assert_allclose(
            whole.hparams["learning_rate"][2 * i : 2 * i + 2],
            alone.hparams["learning_rate"],
            rtol=1e-5,
        )


def _rec(task, label, kind, finals, grid_lr=None, sweep_lr=None, diverged=None):
    return {
        "task": task,
        "family": "f",
        "label": label,
        "kind": kind,
        "grid_lr": grid_lr,
        "sweep_lr": sweep_lr,
        "seeds": [1, 2],
        "final_objective": list(finals),
        "diverged": list(diverged or [False, False]),
    }


def test_summarize_on_hand_made_records():
    from agents.benchmark.summary import summarize

    records = []
    for task in ("a", "b"):
        records += [
            _rec(task, "grid@0.01", "grid", [2.0, 2.0], grid_lr=0.01),
            _rec(task, "grid@0.1", "grid", [1.0, 1.0], grid_lr=0.1),  # the oracle
            _rec(task, "grid@1", "grid", [9.0, 9.0], grid_lr=1.0),
            _rec(task, "policy", "policy", [1.05, 0.9]),
            _rec(task, "constant_default", "method", [2.0, 0.9]),
            _rec(task, "cosine", "method", [1.0, 1.0]),
            _rec(task, "policy", "policy", [1.2, 5.0], sweep_lr=1e-3),
            _rec(task, "cosine", "method", [1.3, 100.0], sweep_lr=1e-3, diverged=[False, True]),
        ]
    config = BenchmarkConfig(n_bootstrap=100, sweep_lrs=(1e-3,))
    summary = summarize(records, config)
    assert summary["tasks"]["a"]["oracle_lr"] == 0.1
    assert not summary["tasks"]["a"]["oracle_at_grid_edge"]
    m = summary["methods"]
    np.testing.assert_allclose(m["policy"]["ratio"], [[1.05, 0.9], [1.05, 0.9]])
    # win, tie, win, tie: strict wins count 2 of 4 (a tie is not half a win)
    assert m["constant_default"]["win_rate_policy_vs"] == pytest.approx(0.5)
    assert m["constant_default"]["wins_policy_vs"] == 2
    assert (
        m["constant_default"]["ties_policy_vs"] == 2
        and m["constant_default"]["losses_policy_vs"] == 0
    )
    assert m["cosine"]["win_rate_policy_vs"] == pytest.approx(0.5)
    assert m["best_of_grid"]["iqm_ratio"] == 1.0 and m["best_of_grid"]["win_rate_policy_vs"] == 0.5
    assert m["policy"]["robustness"] == pytest.approx(0.5)  # 1.2 <= 1.25, 5.0 is not
    assert m["cosine"]["robustness"] == pytest.approx(0.0)
    assert m["cosine"]["sweep_divergence_rate"] == pytest.approx(0.5)
    assert m["policy"]["median_ratio"] == pytest.approx(0.975)
    status = {t["name"]: t["status"] for t in summary["targets"]}
    assert status == {
        "win_rate_vs_constant_default": "NOT MET",
        "win_rate_vs_cosine": "NOT MET",
        "median_ratio_to_oracle": "MET",
        "robustness": "NOT MET",
    }
