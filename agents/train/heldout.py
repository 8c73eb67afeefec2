"""Held-out evaluation during meta-training: the current PPO model as a controller, against the constant default."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.train.config import TrainConfig, resolve_distribution
from hpo_env import (
    FEATURE_SPEC_VERSION,
    FeatureExtractor,
    HyperparameterSpace,
)
from hpo_env.protocol import Task


def heldout_tasks(config: TrainConfig) -> list[Task]:
    """A fixed draw of ``config.n_eval_tasks`` distinct held-out tasks.

    The draw depends only on the distribution and ``eval_seeds`` (not on the
    training seed), so evaluations of different runs are comparable.
    """
    sampler = resolve_distribution(config, "heldout")
    rng = np.random.default_rng(config.eval_seeds[0])
    tasks: dict[str, Task] = {}
    for _ in range(20 * config.n_eval_tasks):
        task = sampler.sample(rng)
        tasks.setdefault(task.name, task)
        if len(tasks) >= config.n_eval_tasks:
            break
    return list(tasks.values())


def control_info(config: TrainConfig, n_samples: int = 64) -> dict[str, Any]:
    """Typical control decisions per run and inner updates per decision in the
    training distribution (the deployed scheduler picks its interval from these)."""
    sampler = resolve_distribution(config, "train")
    rng = np.random.default_rng(config.seed)
    steps, updates, families = [], [], defaultdict(list)
    for _ in range(n_samples):
        task = sampler.sample(rng)
        steps.append(int(task.control_steps))
        updates.append(int(task.updates_per_step))
        families[task.family].append(int(task.control_steps) * int(task.updates_per_step))
    return {
        "decisions_per_run": int(np.median(steps)),
        "decisions_per_run_range": [min(steps), max(steps)],
        "updates_per_step": int(np.median(updates)),
        "updates_per_step_range": [min(updates), max(updates)],
        "updates_per_run_by_family": {f: int(np.median(v)) for f, v in sorted(families.items())},
        "first_decision": "before the first update (from the initial hyperparameters)",
    }


# -- held-out evaluation ------------------------------------------------------------


class SB3PolicyView:
    """A PPO model + its VecNormalize seen as a `TuningPolicy`-like object
    (``space``, ``feature_extractor``, ``act``), for `agents.controllers.rollout.rollout`."""

    def __init__(
        self,
        model: Any,
        vec_normalize: Any,
        space: HyperparameterSpace,
        feature_spec_version: int = FEATURE_SPEC_VERSION,
    ) -> None:
        self.model = model
        self.vec_normalize = vec_normalize
        self.space = space
        self.feature_spec_version = feature_spec_version

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs, spec_version=self.feature_spec_version)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        actions, _ = self.model.predict(
            self.vec_normalize.normalize_obs(obs), deterministic=deterministic
        )
        return np.asarray(actions)


def _summarize(results: Sequence[Any], returns: Sequence[np.ndarray]) -> dict[str, float]:
    diverged = np.concatenate([r.diverged for r in results]).astype(bool)
    ratios = np.concatenate([r.final_val / r.first_val for r in results])
    ok = ~diverged & np.isfinite(ratios)
    return {
        "mean_return": float(np.mean(np.concatenate(returns))),
        "final_val_ratio": float(np.mean(ratios[ok])) if ok.any() else float("nan"),
        "divergence_rate": float(diverged.mean()),
    }


def evaluate_heldout(
    policy: Any,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    val_every: int = 1,
    baseline_cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The deterministic ``policy`` vs a constant learning rate (action 0, i.e.
    the run's initial hyperparameters kept) on fixed tasks and run seeds,
    through `agents.controllers.rollout.rollout` (the benchmark's loop).

    A run wins if its final validation objective is lower (a diverged run's
    objective is its divergence bound, so diverging loses; both diverged is a
    tie, which is not a win: wins are strict). Returns flat metrics (``policy/*``, ``constant/*``,
    ``win_rate``) plus ``per_task`` details. ``baseline_cache`` (task name ->
    result) keeps the constant runs between calls: they do not depend on the
    policy, and they are half the cost.
    """
    from agents.benchmark.stats import strict_wins
    from agents.controllers.learned import PolicyController
    from agents.controllers.rollout import rollout
    from agents.controllers.schedules import ConstantController
    from hpo_env import RewardConfig
    from hpo_env.reward import episode_return

    reward_config = RewardConfig()
    collected: dict[str, list[Any]] = {"policy": [], "constant": []}
    returns: dict[str, list[np.ndarray]] = {"policy": [], "constant": []}
    wins: list[np.ndarray] = []
    per_task: dict[str, Any] = {}
    for task in tasks:
        key = f"{task.name}|{list(seeds)}|{val_every}"
        cache = baseline_cache if baseline_cache is not None else {}
        if key not in cache:
            cache[key] = rollout(ConstantController(), task, seeds, val_every=val_every)
        runs = {
            "policy": rollout(
                PolicyController(policy, deterministic=True), task, seeds, val_every=val_every
            ),
            "constant": cache[key],
        }
        ours, base = runs["policy"].final_objective, runs["constant"].final_objective
        task_wins = strict_wins(ours, base)
        wins.append(task_wins)
        per_task[task.name] = {"family": task.family, "win_rate": float(task_wins.mean())}
        for method, result in runs.items():
            ret = episode_return(
                result.first_val,
                result.val_curve,
                result.final_objective,
                result.diverged,
                result.diverged_at,
                reward_config,
            )
            collected[method].append(result)
            returns[method].append(ret)
            per_task[task.name][method] = _summarize([result], [ret])
    out: dict[str, Any] = {}
    for method in ("policy", "constant"):
        if collected[method]:
            out.update(
                {
                    f"{method}/{k}": v
                    for k, v in _summarize(collected[method], returns[method]).items()
                }
            )
    out["win_rate"] = float(np.concatenate(wins).mean()) if wins else float("nan")
    out["n_tasks"] = len(tasks)
    out["n_seeds"] = len(seeds)
    out["per_task"] = per_task
    return out
