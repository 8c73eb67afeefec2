"""Strict win/tie/loss counts, IQM ratios and stratified bootstrap CIs (cross-checked with rliable)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.benchmark.stats import (
    bootstrap_ci,
    iqm,
    ratio_summary,
    strict_win_tie_loss,
)
from hpo_env.errors import ConfigError


def test_strict_counts_on_hand_made_arrays() -> None:
    policy = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    baseline = np.array([2.0, 2.0, 1.0, 4.0 * (1 + 1e-12), 5.0 * (1 - 1e-6)])
    # wins: 1 < 2; ties: equal, and equal within 1e-9 relative; losses: 3 > 1, 5 > 5(1-1e-6)
    assert strict_win_tie_loss(policy, baseline) == {"wins": 1, "ties": 2, "losses": 2, "n": 5}


def test_a_tie_is_not_half_a_win() -> None:
    same = np.full(4, 0.5)
    counts = strict_win_tie_loss(same, same.copy())
    assert counts == {"wins": 0, "ties": 4, "losses": 0, "n": 4}
    summary = ratio_summary(same.reshape(2, 2), same.reshape(2, 2))
    assert summary["win_rate"] == 0.0


def test_bad_input_is_a_config_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="equal shape"):
        strict_win_tie_loss(np.ones(3), np.ones(4))
    with pytest.raises(ConfigError, match="finite penalty"):
        strict_win_tie_loss(np.array([np.nan]), np.ones(1))
    with pytest.raises(ConfigError, match=r"\[tasks, seeds\]"):
        bootstrap_ci(np.ones(5), resample_tasks=False)


def test_ratio_summary_values() -> None:
    policy = np.array([[1.0, 2.0], [3.0, 4.0]])
    baseline = np.array([[2.0, 2.0], [1.5, 8.0]])
    summary = ratio_summary(policy, baseline, n_boot=200)
    # ratios 0.5, 1.0, 2.0, 0.5 -> IQM of the middle two (0.5, 1.0) = 0.75; median 0.75
    assert summary["iqm_ratio"] == pytest.approx(0.75)
    assert summary["median_ratio"] == pytest.approx(0.75)
    assert (summary["wins"], summary["ties"], summary["losses"]) == (2, 1, 1)
    low, high = summary["iqm_ratio_ci"]
    assert 0.5 <= low <= 0.75 <= high <= 2.0


def test_stratified_bootstrap_keeps_each_task_and_is_seeded() -> None:
    # Task 0 always 1, task 1 always 3: every resample keeps both tasks, so the mean is exactly 2.
    table = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    assert bootstrap_ci(table, np.mean, n_boot=50, resample_tasks=False) == (2.0, 2.0)
    noisy = np.random.default_rng(1).lognormal(size=(4, 5))
    assert bootstrap_ci(noisy, seed=3, resample_tasks=False) == bootstrap_ci(
        noisy, seed=3, resample_tasks=False
    )


def _import_rliable() -> tuple[object, object]:
    """rliable's modules; arch (rliable's bootstrap backend) 7.2 calls pandas'
    ``deprecate_kwarg`` with its pre-3.0 signature, so give it that signature first."""
    pytest.importorskip("rliable")
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg
    if not getattr(original, "_hpo_rl_shim", False):

        def deprecate_kwarg(*args: object, **kwargs: object) -> object:
            if args and isinstance(args[0], str):  # old signature: (old_name, new_name, ...)
                return original(FutureWarning, *args, **kwargs)
            return original(*args, **kwargs)

        deprecate_kwarg._hpo_rl_shim = True  # type: ignore[attr-defined]
        decorators.deprecate_kwarg = deprecate_kwarg
    from rliable import library, metrics

    return library, metrics


@pytest.mark.slow  # importing arch and 4,000 arch resamples: seconds
def test_iqm_and_ci_agree_with_rliable() -> None:
    library, metrics = _import_rliable()
    table = np.random.default_rng(0).lognormal(sigma=0.5, size=(6, 5))  # [tasks, seeds]
    assert float(iqm(table.ravel())) == pytest.approx(metrics.aggregate_iqm(table.T))  # type: ignore[attr-defined]
    _, intervals = library.get_interval_estimates(  # type: ignore[attr-defined]
        {"policy": table.T},  # rliable wants [runs, tasks]
        lambda scores: np.array([metrics.aggregate_iqm(scores)]),  # type: ignore[attr-defined]
        reps=4000,
        confidence_interval_size=0.95,
        random_state=np.random.RandomState(0),  # reproducible: the test cannot flake
    )
    low, high = bootstrap_ci(table, iqm, n_boot=4000, seed=0, resample_tasks=False)
    theirs_low, theirs_high = intervals["policy"][:, 0]
    width = theirs_high - theirs_low
    # Different random draws: the ends agree up to bootstrap noise (a few % of the width).
    assert low == pytest.approx(theirs_low, abs=0.1 * width)
    assert high == pytest.approx(theirs_high, abs=0.1 * width)


def test_saturated_losses_are_floored_and_tie() -> None:
    from agents.benchmark.transfer.summary import OBJECTIVE_FLOOR, _table

    objectives = {"policy": {"wine": [0.0, 1e-5, 0.5]}}
    table = _table(objectives, "policy", ["wine"])
    assert table.tolist() == [[OBJECTIVE_FLOOR, OBJECTIVE_FLOOR, 0.5]]
    counts = strict_win_tie_loss(table[0, :2], np.array([OBJECTIVE_FLOOR, 0.0 + OBJECTIVE_FLOOR]))
    assert counts["ties"] == 2
