"""The rate probe: best constant rate on a grid, the policy from x0.1/x1/x10 of it, the rate at mid-run."""

from __future__ import annotations

import math

import pytest

from agents.benchmark.transfer.loop import RunResult
from agents.benchmark.transfer.probe import (
    BEST_RATE_GRID,
    PROBE_STARTS,
    ProbeRow,
    format_probe,
    mid_run_rate,
    run_probe,
)
from agents.benchmark.transfer.suite import tasks_for


def test_mid_run_rate_is_the_recorded_rate_nearest_the_middle():
    result = RunResult(1.0, 2.0, False, [], [], [10, 50, 90], [0.3, 0.2, 0.1], 0.0)
    assert mid_run_rate(result, 100) == 0.2
    assert math.isnan(mid_run_rate(RunResult(1.0, 2.0, False, [], [], [], [], 0.0), 100))


def test_pass_means_within_a_factor_of_three():
    row = ProbeRow("t", "sgd_momentum", 0.1, 1.0, (0.05, 0.2))
    assert row.ratio == pytest.approx(1.0) and row.passed
    assert not ProbeRow("t", "adam", 0.1, 10.0, (0.5, 0.5)).passed  # x5 away


@pytest.mark.slow
def test_probe_runs_each_start_from_the_best_grid_rate():
    spec = tasks_for("validation", ["classification_mlp_adam"])[0].with_budget(40)
    rows = run_probe("default", specs=[spec], n_seeds=1)
    assert [r.start_multiple for r in rows] == list(PROBE_STARTS)
    multiples = {round(r.best_rate / spec.start_lr, 6) for r in rows}
    assert len(multiples) == 1 and multiples.pop() in {round(g, 6) for g in BEST_RATE_GRID}
    assert all(r.mid_run_rates[0] > 0 and math.isfinite(r.ratio) for r in rows)
    assert "within x3 of the best rate" in format_probe(rows)
