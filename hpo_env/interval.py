"""The one control interval: set hyperparameters -> K updates -> evaluate ->
`StepStats` -> divergence check.

Every driver of a run goes through `run_interval`: the environment's episodes
(`hpo_env.episodes.EpisodeEngine`), the benchmark's and the trainer's rollouts
(`agents.controllers.rollout`) and Population Based Training members
(`agents.benchmark.pbt`). A change to what an interval measures or when a run
counts as diverged is made here once, so the policy is judged on exactly the
loop it was trained in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from hpo_env.protocol import BatchedRun
from hpo_env.reward import RewardConfig, detect_divergence
from hpo_env.stats import StepStats


@dataclasses.dataclass(frozen=True)
class IntervalOutcome:
    """What one control interval did to B runs."""

    stats: StepStats
    """The interval's statistics, with ``progress``, the *observed* validation
    loss (NaN where the controller is not shown it) and ``hparams`` in effect."""
    val: Tensor
    """[B] validation objective measured after the interval (always measured)."""
    diverged: Tensor
    """[B] bool: non-finite or exploded loss/gradient (`hpo_env.reward.detect_divergence`)."""


def validation_seen(episode_step: int | np.ndarray, val_every: int, n_runs: int) -> Tensor:
    """[B] bool: whether the controller sees validation after ``episode_step`` decisions.

    ``val_every`` is the cadence in decisions; 0 means never (deployed users
    report validation at any cadence, or not at all).
    """
    if val_every <= 0:
        return torch.zeros(n_runs, dtype=torch.bool)
    seen = torch.as_tensor(np.asarray(episode_step) % val_every == 0)
    return seen.expand(n_runs) if seen.ndim == 0 else seen


def run_interval(
    run: BatchedRun,
    updates: int,
    *,
    first_val: Tensor,
    progress: Tensor,
    seen: Tensor,
    decision: Mapping[str, Tensor] | None = None,
    reward_config: RewardConfig | None = None,
) -> IntervalOutcome:
    """Apply ``decision``, train ``updates`` steps, evaluate, check divergence.

    Args:
        run: The B runs.
        updates: Inner updates in this interval (K).
        first_val: [B] validation objective before any update (the divergence bound's scale).
        progress: [B] fraction of each run's episode done after this interval.
        seen: [B] bool, whether the controller is shown this interval's validation loss.
        decision: Hyperparameter values for this interval (name -> [B]); names
            left out keep their value. None or empty: keep everything.
        reward_config: The divergence rule (default `RewardConfig()`).
    """
    if decision:
        run.set_hyperparameters(
            {k: torch.as_tensor(v, dtype=torch.float32).reshape(-1) for k, v in decision.items()}
        )
    in_effect = run.get_hyperparameters()
    raw = run.train(updates)
    val = run.evaluate()
    observed = torch.where(seen, val, torch.full_like(val, float("nan")))
    stats = raw.replace(progress=progress, val_loss=observed, hparams=in_effect)
    diverged = detect_divergence(stats, val, first_val, reward_config or RewardConfig())
    return IntervalOutcome(stats=stats, val=val, diverged=diverged)
