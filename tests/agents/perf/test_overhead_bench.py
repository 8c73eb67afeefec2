"""``hpo-rl bench overhead`` runs and ends with ``deploy_overhead=<fraction>``."""

from __future__ import annotations

import itertools
import math

import pytest

from agents.deploy.budget import decisions_per_run
from agents.perf.framework_overhead import (
    BATCH,
    MAX_BATCH,
    MIN_STEP_MS,
    batch_for_step_time,
    plain_step_ms,
    robust_extra,
)
from agents.perf.overhead import ARMS, RUN_STEPS, arm_order, benchmark_policy, run_overhead_bench


@pytest.mark.slow
def test_overhead_bench_quick(capsys):
    result = run_overhead_bench(quick=True, seed=1, frameworks=False)
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
    assert f"overhead_aa_twin={result['overhead_aa_twin']:.4f}" in out
    assert f"overhead_direct={result['overhead_direct']:.4f}" in out
    # Time inside sched.step: two decisions (and 118 appends) in a 120-step round
    # cost something, and far less than the round itself.
    assert 0.0 < result["overhead_direct"] < 0.5
    # The interval a user gets by default on the README's 3000-step run.
    assert result["control_interval"] == RUN_STEPS // decisions_per_run(benchmark_policy()[0])
    # Timing on a shared machine is noisy: only a gross regression fails here.
    assert result["cpu_overhead"] < 0.5
    # The per-step estimate: the decisions' cost shows; the A/A twin reads near 0.
    assert f"overhead_robust={result['overhead_robust']:.4f}" in out
    assert math.isfinite(result["overhead_robust"])
    assert abs(result["overhead_robust_aa_twin"]) < 0.5
    # Where a decision's time goes: 4 decisions timed, parts within the whole.
    assert result["breakdown_decisions"] == 4
    parts = [result[f"breakdown_{p}_us"] for p in ("statistics", "features", "policy")]
    assert all(p > 0 for p in parts) and sum(parts) < result["breakdown_decision_us"]
    assert f"a decision inside this loop: {result['breakdown_decision_us']:.0f} us" in out


def test_arm_order_rotates_every_arm_through_every_position():
    rounds = [arm_order(r) for r in range(len(ARMS))]
    assert all(sorted(order) == sorted(ARMS) for order in rounds)
    for position in range(len(ARMS)):
        assert sorted(order[position] for order in rounds) == sorted(ARMS)
    # No arm runs twice in a row across a round boundary (it would find its model cached).
    for r in range(3 * len(ARMS)):
        assert arm_order(r)[-1] != arm_order(r + 1)[0]


@pytest.mark.slow  # two frameworks' Trainers, a round each
def test_framework_overhead_bench_prints_each_installed_framework(capsys):
    from agents.perf.framework_overhead import run_framework_overhead

    result = run_framework_overhead(benchmark_policy()[0], quick=True, seed=1)
    out = capsys.readouterr().out
    # The batch is sized to this CPU (a >= 10 ms step), and said.
    batch = int(result["framework_batch"])
    assert batch >= BATCH and batch % 32 == 0
    assert f"framework_batch={batch} " in out
    for name, module in (("lightning", "lightning"), ("hf_trainer", "transformers")):
        try:
            __import__(module)
        except ImportError:
            assert f"{name}: not installed" in out
            continue
        assert f"{name}_overhead={result[f'{name}_overhead']:.4f}" in out
        # Every ratio returned is printed.
        for suffix in ("cpu", "aa_twin", "direct", "robust", "robust_aa_twin"):
            key = f"{name}_overhead_{suffix}"
            assert f"{key}={result[key]:.4f}" in out
        assert result[f"{name}_step_ms"] > 0.0
        # The robust estimate found the round's decision (60 steps, one every 60) and
        # counted its step in full rather than trimming it away.
        assert result[f"{name}_decisions_per_round"] == 1
        # The scheduler's own time: a gross regression only (timing on a shared machine).
        assert 0.0 < result[f"{name}_overhead_direct"] < 0.2


def test_batch_grows_until_a_step_takes_ten_ms_on_a_fast_cpu():
    # Slow enough already: the base batch (this AMD EPYC's ~10-12 ms).
    assert batch_for_step_time(12.0) == BATCH
    assert batch_for_step_time(MIN_STEP_MS) == BATCH
    # An AVX-512 Xeon's ~4 ms: 2.5x the work plus a 20% margin, in multiples of 32.
    assert batch_for_step_time(4.0) == 384
    assert batch_for_step_time(3.3) % 32 == 0
    assert batch_for_step_time(3.3) * 3.3 >= BATCH * MIN_STEP_MS
    # Absurdly fast readings are capped, and a broken timer is refused by name.
    assert batch_for_step_time(1e-6) == MAX_BATCH
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_ms"):
            batch_for_step_time(bad)


def test_robust_extra_shrugs_off_bursts_and_counts_decisions():
    plain = [10.0] * 100
    # 1% slower on every step: read as 1%.
    assert robust_extra([10.1] * 100, plain, []) == pytest.approx(0.01)
    # A 50 ms burst on three of the arm's steps (page faults): a sum would read +15%.
    bursty = [10.1] * 100
    for k in (7, 40, 77):
        bursty[k] += 50.0
    assert robust_extra(bursty, plain, []) == pytest.approx(0.01)
    # A burst on the plain arm's steps is ignored the same way.
    plain_bursty = list(plain)
    plain_bursty[3] += 50.0
    assert robust_extra([10.1] * 100, plain_bursty, []) == pytest.approx(0.01)
    # Steps with a decision count in full: 2 decisions of 3 ms over 100 steps of 10 ms.
    decided = [10.1] * 100
    for k in (59, 99):
        decided[k] += 3.0
    assert robust_extra(decided, plain, [59, 99]) == pytest.approx((98 * 0.1 + 2 * 3.1) / 1000)
    assert robust_extra(plain, plain, [59]) == 0.0
    with pytest.raises(ValueError, match="paired step times"):
        robust_extra([1.0, 2.0], [1.0], [])


def test_plain_step_times_the_bare_loop():
    assert plain_step_ms(batch=32, n_steps=3) > 0.0


def _turn_taking_loops(turns, n_steps, log, fail_arm=None):
    """Plain loops that call the hooks a framework would, logging who trains when."""

    def loop(arm):
        def run():
            for step in range(n_steps):
                turns.step_start(arm)
                if arm == fail_arm and step == 2:
                    raise ValueError("this arm's training step failed")
                log.append(arm)
            turns.train_end(arm)

        return run

    return {arm: loop(arm) for arm in turns.arms}


def test_take_turns_trains_one_step_of_each_arm_per_cycle_in_rotated_order():
    from agents.perf.framework_overhead import TakeTurns

    arms = ("plain", "twin", "tuned")
    turns, log = TakeTurns(arms), []
    turns.run(_turn_taking_loops(turns, 12, log))
    cycles = [tuple(log[i : i + 3]) for i in range(0, len(log), 3)]
    assert cycles == [turns.order(k) for k in range(12)]
    assert turns.order(1) == ("twin", "tuned", "plain")
    assert turns.order(3) == ("tuned", "twin", "plain")
    # Over six cycles each arm holds each position twice and follows each other arm
    # equally often, and no arm trains twice in a row (it would find its model cached).
    for position in range(3):
        assert sorted(cycle[position] for cycle in cycles[:6]) == sorted(2 * arms)
    pairs = list(itertools.pairwise(log[:19]))  # six cycles' steps and the next
    assert sorted(set(pairs)) == sorted((a, b) for a in arms for b in arms if a != b)
    assert len({pairs.count(pair) for pair in set(pairs)}) == 1
    assert all(a != b for a, b in itertools.pairwise(log))
    for arm in arms:  # one wall and one CPU time per step, each non-negative
        assert len(turns.wall[arm]) == len(turns.cpu[arm]) == 12
        assert min(turns.wall[arm]) >= 0.0 and min(turns.cpu[arm]) >= 0.0


def test_take_turns_times_a_step_from_its_turn_to_the_next_step_start():
    from agents.perf.framework_overhead import TakeTurns

    ticks = iter(range(1000))
    turns = TakeTurns(("a", "b"), clock=lambda: float(next(ticks)))
    turns.run(_turn_taking_loops(turns, 3, []))
    # Each step reads the clock once at its turn's start and once at its end: one tick
    # apart, whatever the other arm did meanwhile (its waiting is not timed).
    assert turns.wall == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}


def test_take_turns_reraises_a_failing_arm_and_stops_the_others():
    from agents.perf.framework_overhead import TakeTurns

    turns, log = TakeTurns(("plain", "tuned")), []
    with pytest.raises(ValueError, match="training step failed"):
        turns.run(_turn_taking_loops(turns, 50, log, fail_arm="tuned"))
    assert len(log) < 10  # the other arm stopped with it, not after its 50 steps


def test_decision_breakdown_times_each_part_of_this_scheduler_only():
    import torch

    from agents.perf.decision_cost import decision_breakdown, describe_breakdown
    from agents.perf.overhead import _mlp

    policy, _ = benchmark_policy()
    model = _mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = policy.scheduler(opt, total_steps=100, control_interval=5)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 64, generator=g), torch.randint(0, 10, (8,), generator=g))]
    before = len(sched.history)  # the start's row
    result = decision_breakdown(sched, model, opt, batches, n_decisions=3)
    assert result["decisions"] == 3 and len(sched.history) == before + 3
    assert result["rest_us"] == pytest.approx(
        result["decision_us"]
        - result["statistics_us"]
        - result["features_us"]
        - result["policy_us"]
    )
    assert "=" not in describe_breakdown(result)  # the README's speed table takes key=value only
    # The policy itself is not wrapped (other schedulers of it are not timed); the
    # scheduler's stand-in passes everything but act through.
    assert "act" not in vars(policy)
    assert sched.policy.observation_size == policy.observation_size
    with pytest.raises(ValueError, match="n_decisions >= 1"):
        decision_breakdown(sched, model, opt, batches, n_decisions=0)


def test_decision_steps_are_where_a_scheduler_stepped_once_per_update_decides():
    import torch

    from agents.perf.overhead import decision_steps

    policy, _ = benchmark_policy()
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps, interval = 25, 7
    sched = policy.scheduler(opt, total_steps=200, control_interval=interval)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    for r in range(4):
        seen = []
        for k in range(steps):
            before = len(sched.history)
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss.item())
            if len(sched.history) > before:
                seen.append(k)
        assert seen == decision_steps(r, steps, interval)
