"""Benchmark of the Ray backend: meta-training rollouts on 1 and 2 Ray workers vs local.

Measures environment steps per second (control decisions summed over
sub-environments) of the rollout loop PPO runs, ``env.step(actions)`` with
seeded random actions, through: the local `hpo_env.HPOVecEnv` of ``n_envs``
sub-environments (the trainer's ``backend="local"``, one torch thread as
`TrainConfig.torch_threads` sets it), a `RayVecEnv` of one worker holding the
same ``n_envs``, and one of two workers holding ``n_envs`` each. Scaling is
measured at a fixed batch per worker (weak scaling), because that is how the
backend scales: a batched run costs about the same per step at B=8 as at
B=32 (small networks are latency-bound), so splitting a fixed batch over
workers buys little; adding workers that each hold a full batched run does.
The full mode also prints the fixed-total split (2 workers x ``n_envs/2``) for
comparison. Rounds are interleaved and the median is reported, so background
load hits every backend alike; the numbers are still rough on a shared machine.

The last two lines are ``ray_scaling_2w=<2-worker rate over 1-worker rate>``
and ``ray_overhead_1w=<1 - 1-worker rate / local rate>``. Two workers on a
2-core machine share the cores with the driver, so expect scaling well under 2.

Example:
    >>> run_ray_bench(quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.common.platform import describe_platform
from agents.common.ray_backend import ensure_ray
from agents.common.ray_vec_env import RayVecEnv
from agents.common.threads import configure_threads
from hpo_env import make_vec_env

DEFAULT_TASK = "digits_mlp"
"""A fixed meta-training task keeps the per-step cost the same for every backend
(a sampled mix would give the two workers different tasks than the local env)."""


@dataclasses.dataclass(frozen=True)
class RayBenchResult:
    """What `run_ray_bench` measured (environment steps per second)."""

    local_steps_per_s: float
    ray_1w_steps_per_s: float
    ray_2w_steps_per_s: float
    """Two workers of ``n_envs`` sub-environments each."""
    ray_2w_split_steps_per_s: float | None
    """Two workers of ``n_envs / 2`` each (full mode only)."""
    ray_start_s: float
    """Connecting to (or starting) Ray."""
    worker_start_s: dict[str, float]
    """Building each `RayVecEnv` (actor processes, imports, first reset): "ray1", "ray2", ..."""
    n_envs: int
    n_steps: int
    task: str | None

    @property
    def scaling_2w(self) -> float:
        """2-worker rate over 1-worker rate (ideal: 2 on two free cores)."""
        return self.ray_2w_steps_per_s / self.ray_1w_steps_per_s

    @property
    def overhead_1w(self) -> float:
        """Fraction of the local rate lost by stepping in one Ray actor (negative: faster)."""
        return 1.0 - self.ray_1w_steps_per_s / self.local_steps_per_s


def rollout_steps_per_second(env: Any, n_steps: int, seed: int = 0, warmup: int = 2) -> float:
    """Environment steps per second of ``n_steps`` ``env.step`` calls with random actions.

    The env must have been reset. Actions are drawn before timing starts.
    """
    rng = np.random.default_rng(seed)
    shape = (warmup + n_steps, env.num_envs, *env.action_space.shape)
    actions = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    for t in range(warmup):
        env.step(actions[t])
    started = time.perf_counter()
    for t in range(warmup, warmup + n_steps):
        env.step(actions[t])
    return n_steps * env.num_envs / (time.perf_counter() - started)


def run_ray_bench(
    quick: bool = False,
    seed: int = 0,
    *,
    n_envs: int | None = None,
    n_steps: int | None = None,
    repeats: int | None = None,
    task: str | None = DEFAULT_TASK,
    vec_env_kwargs: dict[str, Any] | None = None,
    address: str | None = None,
    print_fn: Callable[[str], None] = print,
) -> RayBenchResult:
    """Measure and print rollout speed: local vs 1 and 2 Ray workers.

    Args:
        quick: fewer sub-environments and steps (seconds of stepping, for CI).
        seed: seeds the vec envs (tasks, runs) and the random actions.
        n_envs: sub-environments per worker, and of the local env (default 16, quick 8;
            even, for the fixed-total split).
        n_steps: timed steps per round (default 30, quick 8).
        repeats: interleaved rounds; the median is reported (default 3, quick 2).
        task: fixed task name, or None for the training distribution's mix.
        vec_env_kwargs: extra `make_vec_env` keyword arguments (e.g. ``distribution``).
        address: Ray address (None: a local Ray with all cores, unless already connected).
        print_fn: where the report lines go.
    """
    n_envs = n_envs if n_envs is not None else (8 if quick else 16)
    n_steps = n_steps if n_steps is not None else (8 if quick else 30)
    repeats = repeats if repeats is not None else (2 if quick else 3)
    if n_envs < 2 or n_envs % 2:
        raise ValueError(f"n_envs must be an even number >= 2 (split over 2 workers), got {n_envs}")
    if n_steps < 1 or repeats < 1:
        raise ValueError(f"n_steps and repeats must be >= 1, got {n_steps=}, {repeats=}")
    kwargs = dict(vec_env_kwargs or {})
    if task is not None:
        kwargs.setdefault("task", task)

    import ray

    print_fn(describe_platform())  # this (driver) machine; Ray workers may run elsewhere
    started_ray = not ray.is_initialized()
    t0 = time.perf_counter()
    ensure_ray(address, num_cpus=max(2, os.cpu_count() or 1), log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    cpus = ray.cluster_resources().get("CPU", 0.0)
    print_fn(
        f"ray bench: task={task or 'training mix'} n_envs={n_envs} steps/round={n_steps} "
        f"rounds={repeats}; Ray CPUs={cpus:g}, machine cores={os.cpu_count()}; "
        "rough numbers: other processes share this machine"
    )

    threads = torch.get_num_threads()
    envs: dict[str, Any] = {}
    worker_start: dict[str, float] = {}
    try:
        configure_threads(1)  # the trainer's local backend (TrainConfig.torch_threads=1)
        envs["local"] = make_vec_env(n_envs, seed=seed, **kwargs)
        envs["local"].reset()
        layouts = {"ray1": (1, n_envs), "ray2": (2, n_envs)}
        if not quick:
            layouts["ray2split"] = (2, n_envs // 2)
        for name, (n_workers, per_worker) in layouts.items():
            t0 = time.perf_counter()
            env = RayVecEnv(
                n_workers,
                per_worker,
                seed=seed,
                vec_env_kwargs=kwargs,
                # The 1- and 2-worker envs live side by side (rounds interleave):
                # reserving CPUs would leave the second waiting on the first.
                num_cpus_per_worker=0.0,
                torch_threads=1,
            )
            envs[name] = env
            env.reset()
            worker_start[name] = time.perf_counter() - t0
        rates: dict[str, list[float]] = {name: [] for name in envs}
        for r in range(repeats):
            for name, env in envs.items():
                rates[name].append(rollout_steps_per_second(env, n_steps, seed=seed + r))
    finally:
        configure_threads(threads)
        for name, env in envs.items():
            if name != "local":
                env.close()
        if started_ray:
            ray.shutdown()

    med = {name: statistics.median(values) for name, values in rates.items()}
    result = RayBenchResult(
        local_steps_per_s=med["local"],
        ray_1w_steps_per_s=med["ray1"],
        ray_2w_steps_per_s=med["ray2"],
        ray_2w_split_steps_per_s=med.get("ray2split"),
        ray_start_s=ray_start_s,
        worker_start_s=worker_start,
        n_envs=n_envs,
        n_steps=n_steps,
        task=task,
    )
    spread = {name: f"{min(v):.0f}-{max(v):.0f}" for name, v in rates.items()}
    print_fn(f"ray start: {ray_start_s:.1f} s (0 if already connected)")
    print_fn(
        f"local vec env ({n_envs} sub-envs, 1 torch thread): {med['local']:.0f} env-steps/s "
        f"(rounds {spread['local']})"
    )
    print_fn(
        f"ray 1 worker x {n_envs}: {med['ray1']:.0f} env-steps/s (rounds {spread['ray1']}; "
        f"worker start {worker_start['ray1']:.1f} s)"
    )
    print_fn(
        f"ray 2 workers x {n_envs}: {med['ray2']:.0f} env-steps/s (rounds {spread['ray2']}; "
        f"worker start {worker_start['ray2']:.1f} s)"
    )
    if "ray2split" in med:
        print_fn(
            f"ray 2 workers x {n_envs // 2} (same total as 1 worker): {med['ray2split']:.0f} "
            f"env-steps/s (rounds {spread['ray2split']}); split/1-worker = "
            f"{med['ray2split'] / med['ray1']:.2f}"
        )
    print_fn(f"ray_scaling_2w={result.scaling_2w:.2f}")
    print_fn(f"ray_overhead_1w={result.overhead_1w:.3f}")
    return result
