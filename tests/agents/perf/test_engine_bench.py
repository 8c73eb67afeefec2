"""The engine benchmark runs end to end and reports its headline ratio."""

from __future__ import annotations

import pytest

from agents.perf.engine import bare_updates_per_second, run_engine_bench, sample_bench_tasks


@pytest.mark.slow
def test_engine_bench_reports_the_headline_ratio() -> None:
    lines: list[str] = []
    summary = run_engine_bench(
        n_tasks=1, batch_sizes=(1, 64), n_sequential_runs=2, min_seconds=0.05, print_fn=lines.append
    )
    assert lines[-1].startswith("engine_speedup_b64=")
    assert summary["engine_speedup_b64"] > 0 and summary["bare_b64"] > 0
    # The headline env_overhead is the paired one; the separate windows' ratio is kept.
    assert f"env_overhead={summary['env_overhead']:.3f}" in lines[-1]
    assert summary["env_overhead"] != summary["env_overhead_unpaired"]
    assert -1.0 < summary["env_overhead"] < 10.0


@pytest.mark.slow
def test_paired_env_overhead_alternates_rounds() -> None:
    from agents.perf.engine import paired_env_overhead

    (task,) = sample_bench_tasks(1, seed=3)
    overhead = paired_env_overhead(task, n_runs=4, rounds=3, seconds_per_round=0.02)
    # The environment does everything bare training does and more.
    assert -0.5 < overhead < 10.0


@pytest.mark.slow
def test_bare_updates_per_second_is_positive() -> None:
    (task,) = sample_bench_tasks(1, seed=3)
    assert bare_updates_per_second(task, n_runs=4, min_seconds=0.05) > 0


def test_preset_throughput_reports_decisions_and_updates() -> None:
    from agents.perf.engine import preset_throughput
    from agents.train.config import get_preset

    rates = preset_throughput(get_preset("smoke"), device="cpu", min_seconds=0.01)
    assert rates["decisions_per_s"] > 0 and rates["updates_per_s"] >= rates["decisions_per_s"]


def test_bench_cli_rejects_device_for_other_benches() -> None:
    from agents.cli import main

    assert main(["bench", "control", "--device", "cuda", "--quick"]) == 2
