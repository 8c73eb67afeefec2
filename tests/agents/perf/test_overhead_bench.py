"""``hpo-rl bench overhead`` runs and ends with ``deploy_overhead=<fraction>``."""

from __future__ import annotations

import math

import pytest

from agents.deploy.scheduler import decisions_per_run
from agents.perf.overhead import RUN_STEPS, benchmark_policy, run_overhead_bench


@pytest.mark.slow
def test_overhead_bench_quick(capsys):
    result = run_overhead_bench(quick=True, seed=1)
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("deploy_overhead=")
    assert f"overhead_skip_guard={result['overhead_skip_guard']:.4f}" in out
    assert float(last.split("=")[1].split()[0]) == pytest.approx(
        result["overhead_paired_median"], abs=1e-4
    )
    assert math.isfinite(result["overhead_fastest_rounds"])
    assert math.isfinite(result["overhead_skip_guard"])
    assert f"overhead_vs_reading_loop={result['overhead_vs_reading_loop']:.4f}" in out
    assert f"overhead_tensor_loss={result['overhead_tensor_loss']:.4f}" in out
    # The interval a user gets by default on the README's 3000-step run.
    assert result["control_interval"] == RUN_STEPS // decisions_per_run(benchmark_policy()[0])
    # Timing on a shared machine is noisy: only a gross regression fails here.
    assert result["cpu_overhead"] < 0.5
