"""What a NaN/inf does to a deployed run: `NonFiniteResponse`, the scheduler's guard job.

Three modes (``TuningScheduler(..., nonfinite=...)``); the learning rate is cut
`BACKOFF_FACTOR`x in every one, at most once per control interval:

- ``"rollback"`` (default): parameters that are no longer finite (checked after
  a non-finite loss, and at every decision) go back to the last decision's
  snapshot (the one `agents.deploy.run_stats.StatsTracker` keeps anyway) and
  the optimizer's per-parameter state is cleared; no cost per update and no
  device synchronisation between decisions.
- ``"skip"``: a `agents.deploy.guard.NonFiniteGuard` checks every update's
  gradients and skips an update with a NaN/inf element (one fused read and one
  host sync per update).
- ``"off"``: only the learning-rate cut.

The response decides *whether* to roll back and to cut; the scheduler owns the
values and writes the cut rate (`TuningScheduler._back_off`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from agents.deploy.guard import NonFiniteGuard
from agents.deploy.run_stats import StatsTracker

__all__ = ["BACKOFF_FACTOR", "NONFINITE_MODES", "NonFiniteResponse", "resolve_nonfinite"]

BACKOFF_FACTOR = 10.0
"""A non-finite loss or gradient divides the learning rate by this (once per control interval)."""
NONFINITE_MODES = ("rollback", "skip", "off")
"""What `TuningScheduler` does about non-finite losses, gradients and parameters."""


def resolve_nonfinite(nonfinite: Any, skip_nonfinite: bool | None) -> str:
    """The mode from ``nonfinite=`` and its deprecated spelling ``skip_nonfinite=``.

    Raises:
        ValueError: An unknown mode, or both spellings at once.
    """
    if skip_nonfinite is not None:
        if nonfinite != "rollback":
            raise ValueError(
                "pass nonfinite= alone: skip_nonfinite is its deprecated spelling "
                f"(got nonfinite={nonfinite!r} and skip_nonfinite={skip_nonfinite!r})"
            )
        nonfinite = "skip" if skip_nonfinite else "off"
        warnings.warn(
            f"skip_nonfinite is deprecated: pass nonfinite={nonfinite!r}",
            DeprecationWarning,
            stacklevel=4,
        )
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(
            f"nonfinite must be one of {list(NONFINITE_MODES)}, got {nonfinite!r} "
            '("rollback" returns to the last decision\'s parameters, "skip" checks every '
            'update\'s gradients, "off" only cuts the learning rate)'
        )
    return str(nonfinite)


class NonFiniteResponse:
    """Counts and undoes a run's non-finite events; tells its owner when to cut the rate.

    Args:
        mode: One of `NONFINITE_MODES`.
        optimizer: The user's optimizer (its per-parameter state is cleared on a rollback).
        tracker: The run's `StatsTracker` (its decision snapshot is what a rollback restores).
        on_skipped: Called by the ``"skip"`` guard after it skipped an update.

    Attributes:
        n_backoffs: Learning-rate back-offs (non-finite losses or gradients).
        n_rollbacks: Returns to the last decision's parameters (``"rollback"``).
        backed_off_in_interval: Whether this interval's back-off was taken.
        warned: Whether the one warning of the run was given.
    """

    def __init__(
        self,
        mode: str,
        optimizer: torch.optim.Optimizer,
        tracker: StatsTracker,
        on_skipped: Callable[[], None],
    ) -> None:
        self.mode = mode
        self.optimizer = optimizer
        self.tracker = tracker
        self.n_backoffs = 0
        self.n_rollbacks = 0
        self.backed_off_in_interval = False
        self.warned = False
        self.guard = NonFiniteGuard(optimizer, on_skipped) if mode == "skip" else None

    @property
    def n_skipped(self) -> int:
        """Optimizer updates the non-finite guard skipped."""
        return 0 if self.guard is None else self.guard.n_skipped

    def after_nonfinite_loss(self) -> None:
        """A NaN/inf loss: its gradient has usually reached the parameters, and then
        ``"rollback"`` puts the last decision's back. Parameters still finite (a
        ``torch.amp.GradScaler`` skipped the update, say) are left as they are."""
        if self.mode == "rollback" and not self.tracker.params_all_finite():
            self.roll_back()

    def at_decision(self) -> bool:
        """A finite loss, yet the parameters measured at the decision are not finite:
        roll back (``"rollback"``). Returns whether it did (the owner then cuts the rate)."""
        if not self.tracker.params_finite and self.mode == "rollback":
            self.roll_back()
            return True
        return False

    def roll_back(self) -> None:
        self.tracker.restore_start()
        state = self.optimizer.state
        for param in self.tracker.params:
            state.pop(param, None)  # torch's optimizers start a parameter's state afresh
        self.n_rollbacks += 1

    def claim_backoff(self) -> bool:
        """Whether this interval may still cut the rate (then it counts the cut)."""
        if self.backed_off_in_interval:
            return False
        self.backed_off_in_interval = True
        self.n_backoffs += 1
        return True

    def warn_once(self, what: str, at_step: int, old: float, new: float, interval: int) -> None:
        """The run's one warning: what happened, what was done and what to do."""
        if self.warned:
            return
        self.warned = True
        if self.n_rollbacks:
            done = (
                "the parameters went back to the last decision's, the optimizer's "
                "per-parameter state was cleared and the learning rate was cut"
            )
            advice = "nonfinite='skip' loses only the bad update, at a cost per update"
        elif self.mode == "rollback":
            done = "the parameters are still finite and the learning rate was cut"
            advice = "they go back to the last decision's if they stop being finite"
        else:
            done = "the learning rate was cut"
            advice = "if the model's parameters are already non-finite, restore a checkpoint"
        warnings.warn(
            f"{what} at step {at_step}: {done} {BACKOFF_FACTOR:g}x (from "
            f"{old:.3g} to {new:.3g}, at most once per {interval} steps); {advice}",
            stacklevel=5,
        )

    def remove(self) -> None:
        """Detach the ``"skip"`` guard from the optimizer (safe to repeat)."""
        if self.guard is not None:
            self.guard.remove()

    # -- checkpointing --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "backed_off_in_interval": self.backed_off_in_interval,
            "n_backoffs": self.n_backoffs,
            "n_rollbacks": self.n_rollbacks,
            "warned_nonfinite": self.warned,
            "n_skipped": self.n_skipped,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.backed_off_in_interval = bool(state["backed_off_in_interval"])
        self.n_backoffs = int(state["n_backoffs"])
        self.n_rollbacks = int(state.get("n_rollbacks", 0))
        self.warned = bool(state["warned_nonfinite"])
        if self.guard is not None:
            self.guard.n_skipped = int(state.get("n_skipped", 0))
