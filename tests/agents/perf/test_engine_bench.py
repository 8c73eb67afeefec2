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
    from agents.perf.presets import preset_throughput
    from agents.train.config import get_preset

    rates = preset_throughput(get_preset("smoke"), device="cpu", min_seconds=0.01)
    assert rates["decisions_per_s"] > 0 and rates["updates_per_s"] >= rates["decisions_per_s"]


def test_bench_cli_rejects_device_for_other_benches() -> None:
    from agents.cli import main

    assert main(["bench", "control", "--device", "cuda", "--quick"]) == 2


def test_preset_throughput_over_whole_rounds_of_given_tasks() -> None:
    from agents.perf.presets import preset_throughput
    from agents.train.config import get_preset
    from tests.conftest import make_tiny_task

    task = make_tiny_task()
    rates = preset_throughput(get_preset("smoke"), device="cpu", tasks=[task])
    # One task: every decision runs its updates_per_step inner updates.
    assert rates["updates_per_s"] / rates["decisions_per_s"] == pytest.approx(task.updates_per_step)
    from agents.perf.presets import draw_preset_tasks

    with pytest.raises(ValueError, match="n_rounds must be >= 1"):
        draw_preset_tasks(get_preset("smoke"), n_rounds=0)


@pytest.mark.slow
def test_device_table_and_runs_fit_on_the_cpu() -> None:
    import torch

    from agents.perf.device_scaling import preset_device_table, runs_fit
    from agents.train.config import get_preset

    lines: list[str] = []
    cpu = torch.device("cpu")
    row = preset_device_table(
        {"smoke": get_preset("smoke")},
        cpu,
        gpu_n_envs=(16,),
        n_rounds=1,
        control_family=None,
        settle="smoke",
        repeats=2,
        print_fn=lines.append,
    )
    best = max(row["smoke_gpu_n8_decisions_per_s"], row["smoke_gpu_n16_decisions_per_s"])
    assert row["smoke_gpu_speedup"] == pytest.approx(best / row["smoke_cpu_decisions_per_s"])
    assert "smoke_gpu_speedup=" in lines[-2]
    # The settled preset: two more alternating pairs, their median ratio printed last.
    assert lines[-1].endswith(f"smoke_gpu_speedup_paired={row['smoke_gpu_speedup_paired']:.1f}")
    assert "2 alternating pairs" in lines[-1]
    assert (
        0
        < row["smoke_gpu_speedup_paired_min"]
        <= row["smoke_gpu_speedup_paired"]
        <= row["smoke_gpu_speedup_paired_max"]
    )
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        preset_device_table({"smoke": get_preset("smoke")}, cpu, repeats=0)
    fit = runs_fit(cpu, n_runs=4, n_steps=1, print_fn=lines.append)
    assert fit["runs_fit_families"] == fit["runs_fit_total"] >= 2
    assert lines[-1].startswith(f"runs_fit={int(fit['runs_fit_total'])}/")


def test_mix_rates_are_expected_work_over_expected_time() -> None:
    from agents.perf.presets import mix_rates

    # Supervised rounds: 2 rounds, 2,000 decisions in 4 s; a control round: 500 in 5 s.
    supervised = {"decisions": 2000.0, "updates": 20000.0, "seconds": 4.0}
    control = {"decisions": 500.0, "updates": 4000.0, "seconds": 5.0}
    rates = mix_rates([(0.8, supervised, 2), (0.2, control, 1)])
    # Per round on average: 0.8 * 1000 + 0.2 * 500 = 900 decisions in 0.8 * 2 + 0.2 * 5 = 2.6 s.
    assert rates["decisions_per_s"] == pytest.approx(900 / 2.6)
    assert rates["updates_per_s"] == pytest.approx((0.8 * 10000 + 0.2 * 4000) / 2.6)


def test_control_share_is_exact_for_a_distribution_and_counted_otherwise() -> None:
    import numpy as np

    from agents.perf.presets import control_share
    from tasks.distribution import default_distribution, task_by_name
    from tests.conftest import make_tiny_task

    assert control_share(default_distribution("train", control_weight=0.15)) == pytest.approx(0.15)
    assert control_share(default_distribution("train", control_weight=0.0)) == 0.0

    control, supervised = task_by_name("control_cartpole"), make_tiny_task()

    class OneInFour:
        def sample(self, rng: np.random.Generator):
            return control if rng.random() < 0.25 else supervised

    assert control_share(OneInFour(), n_draws=4000) == pytest.approx(0.25, abs=0.03)


@pytest.mark.slow
def test_preset_mix_throughput_lies_between_its_kinds() -> None:
    import dataclasses

    from agents.perf.presets import preset_mix_throughput
    from agents.train.config import get_preset

    # 8 envs: the default preset's 8 task groups of one run each.
    config = dataclasses.replace(get_preset("default"), n_envs=8, batch_size=64)
    rates = preset_mix_throughput(config, n_supervised=1)
    # Counted over draws (the default preset's sampler tilts a TaskDistribution).
    assert rates["control_share"] == pytest.approx(0.15, abs=0.02)
    low, high = sorted((rates["supervised_decisions_per_s"], rates["control_decisions_per_s"]))
    assert low <= rates["decisions_per_s"] <= high
    assert 0.0 < rates["control_time_share"] < 1.0
    with pytest.raises(ValueError, match="n_supervised must be >= 1"):
        preset_mix_throughput(config, n_supervised=0)


def test_env_overhead_pairs_cancel_an_order_effect(monkeypatch) -> None:
    """Whichever side runs second in a round reads 20% slower; each pair of rounds (one of
    each order) then still gives the true overhead, where one round alone does not."""
    from agents.perf import engine
    from tests.conftest import make_tiny_task

    true_rates = {"bare": 100.0, "env": 80.0}  # the environment costs 25% more
    calls: list[str] = []

    def fake_timed(side, min_seconds, device="cpu", warm_up=True):
        calls.append(side.__name__)
        second_in_round = len(calls) % 2 == 0
        return true_rates[side.__name__] * (0.8 if second_in_round else 1.0)

    monkeypatch.setattr(engine, "_timed", fake_timed)
    overhead = engine.paired_env_overhead(
        make_tiny_task(), n_runs=2, rounds=4, seconds_per_round=0.0, **engine.NEVER_SHOWN
    )
    assert overhead == pytest.approx(0.25)
    assert calls == ["bare", "env", "env", "bare"] * 2


def test_cadence_mix_weights_each_cadence_by_the_share_of_decisions_shown() -> None:
    from agents.perf.engine import cadence_mix_overhead

    # Cadences 1, 1, 2, 5, 0 show validation at 1, 1, 1/2, 1/5 and 0 of the decisions.
    assert cadence_mix_overhead(0.2, 0.5, (1, 1, 2, 5, 0)) == pytest.approx(0.2 + 0.3 * 0.54)
    assert cadence_mix_overhead(0.2, 0.5, (0,)) == pytest.approx(0.2)
    assert cadence_mix_overhead(0.2, 0.5, (1,)) == pytest.approx(0.5)
