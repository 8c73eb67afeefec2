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
from collections.abc import Mapping, Sequence

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
    """[B] validation objective measured after the interval (always measured): the
    reward's measurement, on the fixed subsample ``val_fraction`` of the validation
    set, or the full set where an episode ends here (see `run_interval`)."""
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


def evaluate_fractions(run: BatchedRun, fractions: Sequence[float]) -> list[Tensor]:
    """``run.evaluate(f)`` for each of ``fractions``, from one pass where the run offers
    ``evaluate_prefixes`` (nested subsamples share the largest one's forward pass)."""
    prefixes = getattr(run, "evaluate_prefixes", None)
    if prefixes is not None:
        return list(prefixes(tuple(fractions)))
    # A run with only the protocol's evaluate; 1.0 is called without arguments so
    # runs written before the fraction argument keep working.
    return [run.evaluate() if f == 1.0 else run.evaluate(f) for f in fractions]


def _measure(
    run: BatchedRun, seen: Tensor, ends: Tensor, val_fraction: float
) -> tuple[Tensor, Tensor]:
    """(reward's validation [B], observed validation [B], NaN where unseen).

    The full set is measured only when someone needs it: a controller shown
    validation (it must equal what a deployed user reports) or an episode's end
    (so a return telescopes to ``log(first_val / final_val)`` on the full set).
    """
    if val_fraction >= 1.0:
        (full,) = evaluate_fractions(run, (1.0,))
        reward_val = full
    elif bool(seen.any()) or bool(ends.any()):
        full, sub = evaluate_fractions(run, (1.0, val_fraction))
        reward_val = torch.where(ends, full, sub)
    else:
        (reward_val,) = evaluate_fractions(run, (val_fraction,))
        full = torch.full_like(reward_val, float("nan"))  # nobody looks at it
    observed = torch.where(seen, full, torch.full_like(full, float("nan")))
    return reward_val, observed


def run_interval(
    run: BatchedRun,
    updates: int,
    *,
    first_val: Tensor,
    progress: Tensor,
    seen: Tensor,
    decision: Mapping[str, Tensor] | None = None,
    reward_config: RewardConfig | None = None,
    val_fraction: float = 1.0,
    ends: Tensor | None = None,
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
        val_fraction: Share of the validation set the reward's measurement uses
            between an episode's start and end: a fixed subsample (the same
            examples at every decision), so consecutive rewards compare like with
            like. The controller's observation and the episode's last measurement
            always use the full set, so the return still telescopes to
            ``log(first_val / final_val)`` on the full set; only the split of that
            return across decisions is noisier. 1.0 (default): always the full set.
        ends: [B] bool, episodes that end after this interval (their measurement
            uses the full set); default: where ``progress >= 1``.
    """
    if decision:
        run.set_hyperparameters(
            {k: torch.as_tensor(v, dtype=torch.float32).reshape(-1) for k, v in decision.items()}
        )
    in_effect = run.get_hyperparameters()
    raw = run.train(updates)
    if ends is None:
        ends = torch.as_tensor(progress) >= 1.0
    val, observed = _measure(run, seen, ends.expand(run.n_runs), val_fraction)
    stats = raw.replace(progress=progress, val_loss=observed, hparams=in_effect)
    diverged = detect_divergence(stats, val, first_val, reward_config or RewardConfig())
    return IntervalOutcome(stats=stats, val=val, diverged=diverged)
