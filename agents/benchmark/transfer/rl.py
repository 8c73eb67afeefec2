"""RL transfer: SB3 PPO and A2C at their default hyperparameters, with and without the policy.

A task provider of the evaluation core (`agents.benchmark.core`): each work item,
an (algorithm, environment, seed), runs on the core's executor and is trained twice from the same seed: once
with SB3's defaults, once with ``TuningPolicy.load(ref).sb3_callback(return_range=...)``
scheduling the learning rate and entropy coefficient. The metric is the mean
return of ``n_eval_episodes`` deterministic evaluation episodes on a separately
seeded environment. Reported: the fraction of runs where the policy is not
worse than the defaults, and the mean difference of returns.

Example:
    >>> result = run_rl_transfer(RLTransferConfig(quick=True))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from agents.benchmark.executor import ItemFailed, LocalExecutor
from hpo_env.errors import ConfigError, unknown_name_error

RETURN_RANGES = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}
"""Episodic returns mapped to 0 and 1 by the policy's callback (the environments' bounds)."""
ALGORITHMS = ("PPO", "A2C")
RL_SEED_BASE = 9_000


@dataclasses.dataclass(frozen=True)
class RLTransferConfig:
    """Settings of the RL transfer runs."""

    policy: str = "default"
    """Shipped bundle name or bundle directory."""
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

    def __post_init__(self) -> None:
        for name in self.algorithms:
            if name not in ALGORITHMS:
                raise unknown_name_error("algorithm", name, ALGORITHMS)
        for env_id in self.env_ids:
            if env_id not in RETURN_RANGES:
                raise unknown_name_error("environment", env_id, RETURN_RANGES)
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

    Returns:
        ``runs`` (one row per run pair), ``summary`` (per algorithm/environment and
        overall: fraction not worse, mean difference) and ``wall_s``.
    """
    from tqdm import tqdm

    from agents.policy.tuning_policy import TuningPolicy

    started = time.perf_counter()
    policy = TuningPolicy.load(config.policy)
    env_ids = ("CartPole-v1",) if config.quick else config.env_ids
    n_seeds = 1 if config.quick else config.n_seeds
    timesteps = config.quick_timesteps if config.quick else config.total_timesteps
    jobs = [
        (a, e, RL_SEED_BASE + i) for a in config.algorithms for e in env_ids for i in range(n_seeds)
    ]
    pair = _RunPair(policy, timesteps, config.n_eval_episodes)
    bar = tqdm(total=len(jobs), disable=not progress, desc="rl transfer")
    done: dict[int, dict[str, Any]] = {}
    try:
        for index, row in LocalExecutor().map_unordered(pair, jobs):
            done[index] = row
            bar.update(1)
    except ItemFailed as failed:
        raise failed.error from None
    finally:
        bar.close()
    rows = [done[i] for i in range(len(jobs))]
    return {"config": dataclasses.asdict(config), "runs": rows, "summary": summarize_rl(rows),
            "wall_s": time.perf_counter() - started}  # fmt: skip


@dataclasses.dataclass
class _RunPair:
    """One work item of the RL suite: an (algorithm, environment, seed) trained with SB3's
    defaults and with the policy's callback, from the same seed."""

    policy: Any
    timesteps: int
    n_eval: int

    def __call__(self, job: tuple[str, str, int]) -> dict[str, Any]:
        algorithm, env_id, seed = job
        default = train_and_evaluate(algorithm, env_id, seed, self.timesteps, self.n_eval)
        callback = self.policy.sb3_callback(return_range=RETURN_RANGES[env_id])
        tuned = train_and_evaluate(
            algorithm, env_id, seed, self.timesteps, self.n_eval, callback=callback
        )
        return {"algorithm": algorithm, "env_id": env_id, "seed": seed,
                "default_return": default, "policy_return": tuned}  # fmt: skip


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
