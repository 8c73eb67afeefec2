"""RL transfer: SB3 PPO and A2C at their default hyperparameters, with and without the policy.

Every (algorithm, environment, seed) is trained twice from the same seed: once with
SB3's defaults, once with ``TuningPolicy.load(ref).sb3_callback(return_range=...)``
scheduling the learning rate and entropy coefficient; each of the two runs is a work
item of the evaluation core's executors (`agents.benchmark.executor`), cached when it
finishes (``<out_dir>/rl_runs.jsonl``). The metric is the mean
return of ``n_eval_episodes`` deterministic evaluation episodes on a separately
seeded environment. The ``validation`` split trains on seeds 8000+ (for choosing an
RL setting), ``test`` on seeds 9000+ (reported, never chosen on): the same
environments and algorithms, so validation differs from test in seeds only (the
classic-control environments that SB3's defaults solve in 100k steps are these two).
Reported: the fraction of runs where the policy is not
worse than the defaults, and the mean difference of returns.

Example:
    >>> result = run_rl_transfer(RLTransferConfig(quick=True))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.benchmark.executor import Executor, ItemFailed, LocalExecutor, ProcessExecutor
from agents.benchmark.transfer.cache import (
    append_record,
    code_revision,
    policy_fingerprint,
    read_cache,
)
from agents.common.threads import torch_threads
from hpo_env.errors import ConfigError, unknown_name_error

RETURN_RANGES = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}
"""Episodic returns mapped to 0 and 1 by the policy's callback (the environments' bounds)."""
ALGORITHMS = ("PPO", "A2C")
RL_SEED_BASES = {"validation": 8_000, "test": 9_000}
"""First training seed of each split (evaluation episodes add 10,000: never a training seed)."""


@dataclasses.dataclass(frozen=True)
class RLTransferConfig:
    """Settings of the RL transfer runs."""

    policy: str = "default"
    """Shipped bundle name or bundle directory."""
    split: str = "test"
    """``validation`` (seeds 8000+, for choosing) or ``test`` (seeds 9000+, for reporting)."""
    algorithms: tuple[str, ...] = ALGORITHMS
    """SB3 algorithms, each at its default hyperparameters."""
    env_ids: tuple[str, ...] = ("CartPole-v1", "Acrobot-v1")
    """Gymnasium environments (keys of `RETURN_RANGES`)."""
    n_seeds: int = 5
    """Training seeds per (algorithm, environment)."""
    total_timesteps: int = 100_000
    """Environment steps per training run."""
    n_eval_episodes: int = 10
    """Deterministic evaluation episodes after training."""
    quick: bool = False
    """Smoke mode: one seed, ``quick_timesteps`` steps, CartPole only."""
    quick_timesteps: int = 2_048
    """Steps per run in quick mode (one PPO rollout)."""
    workers: int = 1
    """Local processes training runs side by side (the returns do not depend on it)."""
    out_dir: str | None = None
    """Where finished runs are cached (``rl_runs.jsonl``); None caches nothing."""
    resume: bool = True
    """Reuse the runs cached in ``out_dir``."""

    def __post_init__(self) -> None:
        if self.split not in RL_SEED_BASES:
            raise unknown_name_error("RL split", self.split, RL_SEED_BASES)
        for name in self.algorithms:
            if name not in ALGORITHMS:
                raise unknown_name_error("algorithm", name, ALGORITHMS)
        for env_id in self.env_ids:
            if env_id not in RETURN_RANGES:
                raise unknown_name_error("environment", env_id, RETURN_RANGES)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be an int >= 1 (--workers), got {self.workers!r}")
        if self.n_seeds < 1 or self.total_timesteps < 1 or self.n_eval_episodes < 1:
            raise ConfigError(
                "n_seeds, total_timesteps and n_eval_episodes must be >= 1, got "
                f"{self.n_seeds=}, {self.total_timesteps=}, {self.n_eval_episodes=}"
            )


def train_and_evaluate(
    algorithm: str, env_id: str, seed: int, timesteps: int, n_eval: int, callback: Any = None
) -> float:
    """Mean deterministic evaluation return of one SB3 run at default hyperparameters."""
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import Logger

    model = getattr(stable_baselines3, algorithm)("MlpPolicy", env_id, seed=seed, device="cpu")
    # SB3's default logger makes an empty /tmp/SB3-<time> folder per learn() call.
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(timesteps, callback=callback)
    eval_env = gym.make(env_id)
    eval_env.reset(seed=seed + 10_000)  # evaluation episodes never replay training seeds
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=n_eval, deterministic=True, return_episode_rewards=True
    )
    eval_env.close()
    return float(np.mean(returns))


def run_rl_transfer(config: RLTransferConfig, progress: bool = False) -> dict[str, Any]:
    """Defaults vs the policy's callback on every (algorithm, environment, seed).

    Each run (one arm of one pair) is a work item of its own, so ``workers`` processes
    train them side by side, and a finished run is appended to ``<out_dir>/rl_runs.jsonl``:
    a killed suite resumes where it stopped, and a new bundle retrains only the policy's
    arm (a defaults run's key has no bundle in it). The returns depend only on the run
    (every run trains on one torch thread), not on the number of workers.

    Returns:
        ``runs`` (one row per run pair), ``summary`` (per algorithm/environment and
        overall: fraction not worse, mean difference), ``wall_s`` and ``cached`` (runs
        read from the cache instead of trained).
    """
    from tqdm import tqdm

    from agents.policy.tuning_policy import TuningPolicy

    started = time.perf_counter()
    TuningPolicy.load(config.policy)  # a bad reference fails here, before any run
    env_ids = ("CartPole-v1",) if config.quick else config.env_ids
    n_seeds = 1 if config.quick else config.n_seeds
    timesteps = config.quick_timesteps if config.quick else config.total_timesteps
    pairs = [
        (a, e, RL_SEED_BASES[config.split] + i)
        for a in config.algorithms
        for e in env_ids
        for i in range(n_seeds)
    ]
    runs = [RLRun(arm, *pair) for pair in pairs for arm in ARMS]
    fingerprint, code = policy_fingerprint(config.policy), code_revision()
    keys = [
        run.cache_key(
            timesteps, config.n_eval_episodes, fingerprint if run.arm == "policy" else "", code
        )
        for run in runs
    ]
    cache_path = Path(config.out_dir) / RL_CACHE_FILE if config.out_dir else None
    cache = read_cache(cache_path) if (cache_path and config.resume) else {}
    returns: dict[int, float] = {i: float(cache[k]) for i, k in enumerate(keys) if k in cache}
    todo = [i for i in range(len(runs)) if i not in returns]
    train = _TrainRun(config.policy, timesteps, config.n_eval_episodes)
    executor: Executor = (
        LocalExecutor()
        if config.workers == 1
        else ProcessExecutor(config.workers, preload=RL_PRELOAD)
    )
    bar = tqdm(total=len(todo), disable=not progress, desc="rl transfer")
    try:
        with torch_threads(1):
            for j, value in executor.map_unordered(train, [runs[i] for i in todo]):
                returns[todo[j]] = value
                if cache_path is not None:
                    append_record(cache_path, keys[todo[j]], value)
                bar.update(1)
    except ItemFailed as failed:
        raise failed.error from None
    finally:
        bar.close()
    rows = [
        {"algorithm": a, "env_id": e, "seed": s,
         "default_return": returns[2 * p], "policy_return": returns[2 * p + 1]}
        for p, (a, e, s) in enumerate(pairs)
    ]  # fmt: skip
    return {"config": dataclasses.asdict(config), "runs": rows, "summary": summarize_rl(rows),
            "wall_s": time.perf_counter() - started, "cached": len(runs) - len(todo)}  # fmt: skip


ARMS = ("defaults", "policy")
"""The two arms of a pair, in the order `run_rl_transfer` lays them out."""
RL_CACHE_FILE = "rl_runs.jsonl"
RL_PRELOAD = ("stable_baselines3", "gymnasium", "agents.policy.tuning_policy")
"""Modules the workers' fork server imports once (none runs a torch op)."""


@dataclasses.dataclass(frozen=True)
class RLRun:
    """One SB3 run of the suite: ``arm`` is ``"defaults"`` or ``"policy"`` (the callback)."""

    arm: str
    algorithm: str
    env_id: str
    seed: int

    def cache_key(self, timesteps: int, n_eval: int, fingerprint: str, code: str) -> str:
        identity = ["rl", self.arm, self.algorithm, self.env_id, self.seed, timesteps, n_eval,
                    fingerprint, code]  # fmt: skip
        return hashlib.sha1(json.dumps(identity).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class _TrainRun:
    """Trains one `RLRun`; the bundle travels as its reference and loads once per process."""

    policy: str
    timesteps: int
    n_eval: int

    def __call__(self, run: RLRun) -> float:
        callback = None
        if run.arm == "policy":
            callback = _loaded(self.policy).sb3_callback(return_range=RETURN_RANGES[run.env_id])
        return train_and_evaluate(
            run.algorithm, run.env_id, run.seed, self.timesteps, self.n_eval, callback=callback
        )


@functools.lru_cache(maxsize=4)
def _loaded(ref: str) -> Any:
    from agents.policy.tuning_policy import TuningPolicy

    return TuningPolicy.load(ref)


def summarize_rl(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fraction of runs where the policy's return is not below the defaults', and the mean difference."""
    if not rows:
        raise ConfigError(
            "no RL runs to summarise: give at least one algorithm, environment and seed"
        )

    def block(selected: list[dict[str, Any]]) -> dict[str, Any]:
        diff = np.array([r["policy_return"] - r["default_return"] for r in selected])
        return {"n": len(selected), "not_worse": float(np.mean(diff >= 0)),
                "mean_difference": float(diff.mean())}  # fmt: skip

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(f"{row['algorithm']} {row['env_id']}", []).append(row)
    return {"overall": block(rows), **{name: block(group) for name, group in groups.items()}}


def format_rl_summary(summary: dict[str, Any]) -> str:
    return "\n".join(
        f"- {name}: policy not worse than defaults in {100 * s['not_worse']:.0f}% of {s['n']} runs, "
        f"mean return difference {s['mean_difference']:+.1f}"
        for name, s in summary.items()
    )
