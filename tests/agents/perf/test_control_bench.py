"""``hpo-rl bench control`` runs and ends with ``control_speedup=<median paired ratio>``."""

from __future__ import annotations

import math

import pytest

from agents.perf.control import run_control_bench


@pytest.mark.slow
def test_control_bench_quick_reports_the_paired_median(capsys):
    result = run_control_bench(quick=True, n_threads=1, rounds=3)
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last == f"control_speedup={result.speedup:.1f}"
    assert result.speedup == result.paired_speedup
    assert math.isfinite(result.speedup) and result.speedup > 0
    assert "paired rounds: batched/one-env ratio IQR" in out
    assert result.batched_steps_per_s > 0 and result.gym_single_steps_per_s > 0
    assert result.seconds_per_control_step >= result.seconds_per_train_interval > 0
