"""Reward: progress of the validation objective in log space; divergence detection.

A step's reward is ``log(prev_val) - log(val)``, unclipped, so an undiscounted
episode's return telescopes *exactly* to ``log(first_val / final_val)``: the final
validation objective, scale-free, with tasks of every loss scale counting alike.
Gains made early and lost later are paid back in full, so a spike-and-recovery
or an early sprint earns nothing beyond the final result. (Per-step rewards are
finite without a clip: a loss past ``divergence_factor`` times its first value
ends the run.) A diverged run ends
with ``terminated=True`` and a reward that takes back the episode's gains and
charges ``divergence_penalty``: worse than stopping, whatever the run had
achieved before blowing up.

Paired (twin) reward, opt-in (``RewardConfig(paired=True)``): every run has a
twin, the same task instance, initialisation, data order and start rate driven
by the prior alone (action 0 at every decision). A step's reward is the run's
log progress minus its twin's (`paired_reward`), so an episode's return
telescopes to ``log(twin_final / run_final)``: whether the corrections beat the
schedule on this very run, with the task's difficulty cancelled (common random
numbers, as in PES). A twin that diverges is held at its divergence value
``first_val * divergence_factor`` (`objective_of`'s rule); a run that diverges
alone takes back the episode's paired gains and pays ``divergence_penalty``, and
one that diverges with (or after) its twin ties it: its return becomes 0.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from hpo_env.errors import ConfigError
from hpo_env.stats import StepStats


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """How progress is rewarded and divergence detected."""

    divergence_factor: float = 100.0
    """A run whose train or validation loss exceeds this multiple of its first
    validation loss counts as diverged."""
    divergence_penalty: float = 2.0
    """Return of a diverged episode (negated); in nats of validation loss."""
    step_clip: float | None = None
    """Clip per-step rewards to [-step_clip, step_clip]; None (the default) keeps the
    return equal to the final objective. A clip lets spikes and early gains pay."""
    paired: bool = False
    """Pay each run's log progress minus its twin's (same instance, init, data order
    and start rate, driven by the prior alone; extra rows of the same batched run),
    so the return is ``log(twin_final / run_final)``. Doubles the runs' compute.
    False (the default): the run's own log progress."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.divergence_factor) and self.divergence_factor > 1):
            raise ConfigError(
                f"divergence_factor must be a finite number > 1, got {self.divergence_factor!r}"
            )
        if not (math.isfinite(self.divergence_penalty) and self.divergence_penalty >= 0):
            raise ConfigError(
                f"divergence_penalty must be finite and >= 0, got {self.divergence_penalty!r}"
            )
        if self.step_clip is not None and not (
            math.isfinite(self.step_clip) and self.step_clip > 0
        ):
            raise ConfigError(f"step_clip must be None or finite and > 0, got {self.step_clip!r}")
        if not isinstance(self.paired, bool):
            raise ConfigError(f"paired must be True or False, got {self.paired!r}")


def detect_divergence(
    stats: StepStats, val_loss: Tensor, first_val: Tensor, config: RewardConfig
) -> Tensor:
    """[B] bool: non-finite loss or gradient, or a loss exploding past the bound."""
    bound = first_val * config.divergence_factor
    non_finite = ~(
        torch.isfinite(stats.train_loss)
        & torch.isfinite(val_loss)
        & torch.isfinite(stats.grad_norm)
    )
    exploded = (torch.nan_to_num(stats.train_loss, nan=0.0) > bound) | (
        torch.nan_to_num(val_loss, nan=0.0) > bound
    )
    return non_finite | exploded


def progress_reward(
    prev_val: Tensor, val: Tensor, first_val: Tensor, diverged: Tensor, config: RewardConfig
) -> Tensor:
    """[B] float32 rewards for one control step."""
    log_prev = torch.log(prev_val.clamp_min(1e-12))
    progress = log_prev - torch.log(torch.nan_to_num(val, nan=1.0).clamp_min(1e-12))
    # On divergence, undo the episode's gains so far (never its losses, so that
    # diverging is never a way out of a bad run) and charge the penalty.
    so_far = torch.log(first_val.clamp_min(1e-12)) - log_prev
    penalty = -so_far.clamp_min(0.0) - config.divergence_penalty
    if config.step_clip is not None:
        progress = progress.clamp(-config.step_clip, config.step_clip)
    reward = torch.where(diverged, penalty, progress)
    return torch.nan_to_num(reward, nan=-config.divergence_penalty).to(torch.float32)


def paired_reward(
    prev_val: Tensor,
    val: Tensor,
    twin_prev: Tensor,
    twin_val: Tensor,
    diverged: Tensor,
    return_so_far: Tensor,
    config: RewardConfig,
    twin_diverged: Tensor | None = None,
) -> Tensor:
    """[B] float32 paired rewards for one control step (see the module docstring).

    Args:
        prev_val, val: [B] the run's reward measurement before and after the step.
        twin_prev, twin_val: [B] its twin's (a diverged twin's held at its divergence value).
        diverged: [B] bool, the run diverged in this step.
        return_so_far: [B] the episode's paired return before this step.
        twin_diverged: [B] bool, the twin has diverged (now or before). A run that
            diverges with its twin ties it (both end at their divergence value): its
            return becomes 0; alone, it takes back its gains and pays the penalty.
    """

    def log(x: Tensor) -> Tensor:
        return torch.log(torch.nan_to_num(x, nan=1.0).clamp_min(1e-12))

    progress = (log(prev_val) - log(val)) - (log(twin_prev) - log(twin_val))
    if config.step_clip is not None:
        progress = progress.clamp(-config.step_clip, config.step_clip)
    penalty = -return_so_far.clamp_min(0.0) - config.divergence_penalty
    if twin_diverged is not None:
        penalty = torch.where(twin_diverged, -return_so_far, penalty)
    reward = torch.where(diverged, penalty, progress)
    return torch.nan_to_num(reward, nan=-config.divergence_penalty).to(torch.float32)


def objective_of(
    final_val: np.ndarray, first_val: np.ndarray, diverged: np.ndarray, config: RewardConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The metric a run is judged on, and whether it counts as diverged.

    A diverged (or non-finite) run's objective is its *divergence value*
    ``first_val * divergence_factor``: the bound past which a loss counts as
    diverged, so it is finite and never better than a run that stayed below it.

    Returns:
        ``(objective [B], diverged [B] bool)``.
    """
    final_val = np.asarray(final_val, dtype=np.float64)
    diverged = np.asarray(diverged, dtype=bool) | ~np.isfinite(final_val)
    bound = np.asarray(first_val, dtype=np.float64) * config.divergence_factor
    return np.where(diverged, bound, final_val), diverged


def episode_return(
    first_val: np.ndarray,
    val_curve: np.ndarray,
    objective: np.ndarray,
    diverged: np.ndarray,
    diverged_at: np.ndarray,
    config: RewardConfig,
) -> np.ndarray:
    """[B] the return `progress_reward` pays over a whole episode, from its curves.

    ``log(first_val / objective)`` for runs that finished; for a run that
    diverged at interval ``t``, ``min(gain before t, 0) - divergence_penalty``.
    (With a ``step_clip``, only curves within one step's clip telescope.)
    """
    first = np.asarray(first_val, dtype=np.float64)
    out = np.log(first / np.asarray(objective, dtype=np.float64))
    for i in np.flatnonzero(diverged):
        at = int(diverged_at[i])
        before = first[i] if at <= 0 else val_curve[i, at - 1]
        gained = np.log(first[i] / before) if np.isfinite(before) and before > 0 else 0.0
        out[i] = min(gained, 0.0) - config.divergence_penalty
    return out
