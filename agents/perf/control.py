"""Benchmark of the control family: batched torch physics vs Gymnasium, and the inner learner.

Measures environment steps per second of `tasks.control.batched_env.BatchedControlEnv`
(CartPole, B x E environments in one call) against Gymnasium's ``CartPole-v1``
stepped one environment at a time through its Python API and against
``gymnasium.vector.SyncVectorEnv`` of the same total size, then the batched A2C
learner's inner updates per second and seconds per control step at B runs.
The last line is ``control_speedup=<batched steps/s over one Gymnasium env>``: the
median over alternating rounds of each round's ratio (the two sides of a round run
back to back, so background load hits both alike; each side's best round varied
±30% between runs on a 2-core machine, the paired median far less).

Example:
    >>> run_control_bench(n_runs=2, n_envs=4, n_steps=5, gym_steps=50, sync_steps=2,
    ...                   learner_runs=2, learner_intervals=1)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from agents.common.platform import describe_platform
from tasks.control import CARTPOLE_DEFAULT, BatchedControlEnv, get_system


@dataclasses.dataclass(frozen=True)
class ControlBenchResult:
    """What `run_control_bench` measured (steps are environment transitions)."""

    batched_steps_per_s: float
    gym_single_steps_per_s: float
    gym_sync_steps_per_s: float
    learner_updates_per_s: float
    """Batched inner updates per second (each advances all ``learner_runs`` runs)."""
    learner_run_updates_per_s: float
    """Inner updates per second summed over runs."""
    seconds_per_control_step: float
    """``train(K)`` + ``evaluate()`` at ``learner_runs`` runs, K = the task's updates_per_step."""
    seconds_per_train_interval: float
    """``train(K)`` alone."""
    paired_speedup: float
    """Median over rounds of (batched / one Gymnasium env) steps per second."""

    @property
    def speedup(self) -> float:
        """The headline ratio: `paired_speedup`."""
        return self.paired_speedup


def _batched_round(n_runs: int, n_envs: int, n_steps: int) -> Callable[[], float]:
    """A callable timing ``n_steps`` more batched CartPole steps; returns env steps per second."""
    system = get_system("cartpole")
    env = BatchedControlEnv(system, system.default_context(n_runs), n_envs)
    gen = torch.Generator().manual_seed(0)
    shape = (n_runs, n_envs, system.n_reset_uniforms)
    env.reset(torch.rand(shape, dtype=torch.float64, generator=gen))
    # Actions and start-state uniforms drawn up front, as for the Gymnasium side:
    # the timing is of the physics, auto-reset and bookkeeping alone.
    actions = torch.randint(0, 2, (n_steps, n_runs, n_envs), generator=gen)
    reset_u = torch.rand(shape, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        for t in range(3):  # warm-up
            env.step(actions[t], reset_u)

    def one_round() -> float:
        with torch.no_grad():
            start = time.perf_counter()
            for t in range(n_steps):
                env.step(actions[t], reset_u)
            elapsed = time.perf_counter() - start
        return n_runs * n_envs * n_steps / elapsed

    return one_round


def _gym_single_round(n_steps: int) -> Callable[[], float]:
    """A callable timing ``n_steps`` more steps of one Gymnasium ``CartPole-v1``."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, n_steps)
    env.reset(seed=0)

    def one_round() -> float:
        start = time.perf_counter()
        for t in range(n_steps):
            _, _, terminated, truncated, _ = env.step(int(actions[t]))
            if terminated or truncated:
                env.reset()
        return n_steps / (time.perf_counter() - start)

    return one_round


def _bench_speedup_pair(
    n_runs: int, n_envs: int, n_steps: int, gym_steps: int, rounds: int
) -> tuple[list[float], list[float]]:
    """(batched, one Gymnasium env) env steps per second of each of ``rounds``
    alternating rounds, each timing ``1/rounds`` of the steps; the side that goes
    first alternates too."""
    batched_round = _batched_round(n_runs, n_envs, max(1, n_steps // rounds))
    gym_round = _gym_single_round(max(1, gym_steps // rounds))
    batched: list[float] = []
    single: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            batched.append(batched_round())
            single.append(gym_round())
        else:
            single.append(gym_round())
            batched.append(batched_round())
    return batched, single


def _bench_gym_sync(n_envs: int, n_steps: int) -> float:
    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n_envs)])
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n_steps):
        env.step(rng.integers(0, 2, n_envs))
    elapsed = time.perf_counter() - start
    env.close()
    return n_envs * n_steps / elapsed


def _bench_learner(n_runs: int, n_intervals: int) -> tuple[float, float, float]:
    task = CARTPOLE_DEFAULT
    run = task.build(list(range(n_runs)))
    run.train(1)  # warm-up
    k = task.updates_per_step
    train_s = eval_s = 0.0
    for _ in range(n_intervals):
        start = time.perf_counter()
        run.train(k)
        mid = time.perf_counter()
        run.evaluate()
        train_s += mid - start
        eval_s += time.perf_counter() - mid
    updates_per_s = n_intervals * k / train_s
    return updates_per_s, (train_s + eval_s) / n_intervals, train_s / n_intervals


def run_control_bench(
    *,
    n_runs: int = 64,
    n_envs: int = 1024,
    n_steps: int = 300,
    gym_steps: int = 60_000,
    sync_steps: int = 5,
    learner_runs: int = 64,
    learner_intervals: int = 5,
    rounds: int = 15,
    n_threads: int | None = None,
    quick: bool = False,
    seed: int = 0,
) -> ControlBenchResult:
    """Measure and print the control benchmark; returns the numbers.

    Args:
        n_runs: B of the batched physics benchmark.
        n_envs: E per run of the batched physics benchmark (B * E environments in all).
        n_steps: batched steps timed.
        gym_steps: steps timed on one Gymnasium ``CartPole-v1``.
        sync_steps: steps timed on a ``SyncVectorEnv`` of B * E Gymnasium environments.
        learner_runs: B of the learner benchmark (the default CartPole task).
        learner_intervals: control steps (``train(K)`` + ``evaluate()``) timed.
        rounds: alternating rounds of the batched and the one-env Gymnasium timing;
            the speedup is the median of the rounds' ratios (each side's best round
            is printed too).
        n_threads: torch intra-op threads (None: leave torch's setting).
        quick: shrink every size (seconds, for CI); the speedup is then not representative.
        seed: unused (the benchmark draws no tasks); accepted for the ``hpo-rl bench`` CLI.
    """
    del seed
    if quick:
        n_envs, n_steps, gym_steps, sync_steps = (
            min(n_envs, 64),
            min(n_steps, 20),
            min(gym_steps, 2000),
            2,
        )
        learner_runs, learner_intervals = min(learner_runs, 8), 1
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    total = n_runs * n_envs
    print(describe_platform())  # the CPU and kernel path these rates belong to
    print(
        f"control bench: torch {torch.__version__}, {torch.get_num_threads()} thread(s), B={n_runs}, E={n_envs} ({total} envs)"
    )
    batched_rounds, single_rounds = _bench_speedup_pair(n_runs, n_envs, n_steps, gym_steps, rounds)
    batched, single = max(batched_rounds), max(single_rounds)
    ratios = [b / g for b, g in zip(batched_rounds, single_rounds)]
    print(f"batched torch CartPole: {batched:,.0f} env steps/s (best of {rounds} rounds)")
    print(f"gymnasium CartPole-v1, one env: {single:,.0f} env steps/s (best of {rounds} rounds)")
    print(
        f"paired rounds: batched/one-env ratio IQR [{np.percentile(ratios, 25):.1f}, "
        f"{np.percentile(ratios, 75):.1f}], best-of-each ratio {batched / single:.1f}"
    )
    sync = _bench_gym_sync(total, sync_steps)
    print(
        f"gymnasium SyncVectorEnv x{total}: {sync:,.0f} env steps/s (batched is {batched / sync:.0f}x)"
    )
    updates, per_control, per_train = _bench_learner(learner_runs, learner_intervals)
    cfg = CARTPOLE_DEFAULT.learner
    print(
        f"inner A2C learner, B={learner_runs} (E={cfg.n_envs}, n_steps={cfg.n_steps}, hidden={cfg.hidden}): "
        f"{updates:.1f} batched updates/s = {updates * learner_runs:.0f} run-updates/s; "
        f"control step (K={CARTPOLE_DEFAULT.updates_per_step}) {per_train * 1000:.0f} ms train + "
        f"{(per_control - per_train) * 1000:.0f} ms evaluate = {per_control * 1000:.0f} ms"
    )
    result = ControlBenchResult(
        batched,
        single,
        sync,
        updates,
        updates * learner_runs,
        per_control,
        per_train,
        paired_speedup=float(np.median(ratios)),
    )
    print(f"control_speedup={result.speedup:.1f}")
    return result
