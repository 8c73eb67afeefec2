"""The decision clock: when a run's hyperparameters change, and to what.

One object knows a run's budget (``total_steps`` updates), its control interval
(``control_interval`` updates per decision), where an annealing prior is read
(the coming interval's midpoint, `DecisionClock.position`) and how an action
becomes the values in effect::

    chosen    = space.apply(chosen, action)          # the policy's own values: what it observes
    in_effect = space.scheduled(chosen, position)    # what the run (the optimizer) receives

The environment (`hpo_env.episodes.EpisodeEngine`, B runs, one decision per
interval: ``control_interval=1`` counted in decisions), the benchmark's
`agents.controllers.learned.PolicyController`, the torch
`agents.deploy.scheduler.TuningScheduler` (updates) and the SB3
`agents.deploy.sb3_callback.TuningCallback` (environment steps) all call it, so
a decision is written once. `decide` takes tensors ([B] values, [B, k] actions),
`decide_one` one run's float32 scalars (`HyperparameterSpace.apply_one`, bit for
bit what `decide` gives on one run, at a hundredth of its cost inside a training
loop).

Example:
    >>> from hpo_env.space import HyperparameterSpace
    >>> space = HyperparameterSpace.from_names(["learning_rate"], lr_prior="cosine_warmup")
    >>> clock = DecisionClock(space, total_steps=100, control_interval=10)
    >>> clock.position(steps_done=0)  # the first interval's midpoint, where the prior is read
    0.05
    >>> decision = clock.decide_one({"learning_rate": 0.1}, [0.0], steps_done=0)
    >>> round(decision.in_effect["learning_rate"], 6)  # cosine with warm-up, at its peak
    0.1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from hpo_env.space import HyperparameterSpace

__all__ = ["Decision", "DecisionClock", "prior_position"]


def prior_position(steps_done: Any, interval: float, total: Any) -> Any:
    """Progress at the middle of the interval that starts after ``steps_done`` of
    ``total`` updates and lasts ``interval`` (where a prior is read), in [0, 1].

    Scalars give a Python float; NumPy arrays (one entry per run) a float64 array.
    """
    if isinstance(steps_done, np.ndarray) or isinstance(total, np.ndarray):
        return np.minimum(1.0, np.maximum(0.0, (steps_done + 0.5 * interval) / total))
    return min(1.0, max(0.0, (steps_done + 0.5 * interval) / total))


@dataclasses.dataclass
class Decision:
    """One decision's outcome.

    Attributes:
        chosen: The policy's own values after the action (what it observes next).
        in_effect: The values the run receives for the coming interval: ``chosen``
            times the prior at ``position`` where the space has one, else ``chosen``.
        position: Where the prior was read (the coming interval's midpoint).
    """

    chosen: dict[str, Any]
    in_effect: dict[str, Any]
    position: Any


class DecisionClock:
    """A run's budget, its control interval and the action -> values-in-effect map.

    Args:
        space: The controlled hyperparameters (bounds, action mapping, prior).
        total_steps: The run's budget in the caller's unit (updates, decisions,
            environment steps); an int, or an int array with one budget per run.
        control_interval: Units per decision (1 when ``total_steps`` counts decisions).

    Raises:
        ValueError: A budget or interval below 1.
    """

    def __init__(
        self, space: HyperparameterSpace, total_steps: Any, control_interval: int = 1
    ) -> None:
        if np.any(np.asarray(total_steps) < 1):
            raise ValueError(f"total_steps must be >= 1 (the run's budget), got {total_steps=}")
        if int(control_interval) < 1:
            raise ValueError(
                f"control_interval must be >= 1 (units per decision), got {control_interval=}"
            )
        self.space = space
        self.total_steps = total_steps
        self.control_interval = int(control_interval)

    def __repr__(self) -> str:
        return (
            f"DecisionClock(total_steps={self.total_steps!r}, "
            f"control_interval={self.control_interval}, space={list(self.space.names)})"
        )

    # -- time -------------------------------------------------------------------

    def position(self, steps_done: Any, total_steps: Any = None) -> Any:
        """Where the prior is read for the interval starting after ``steps_done``."""
        total = self.total_steps if total_steps is None else total_steps
        return prior_position(steps_done, self.control_interval, total)

    def progress(self, steps_done: Any, total_steps: Any = None) -> Any:
        """The fraction of the budget done after ``steps_done`` (what the policy observes)."""
        total = self.total_steps if total_steps is None else total_steps
        return steps_done / total

    # -- action -> values in effect ------------------------------------------------

    def decide(
        self,
        chosen: Mapping[str, Tensor],
        actions: Tensor | np.ndarray,
        steps_done: Any,
        total_steps: Any = None,
    ) -> Decision:
        """B runs: ``actions`` [B, k] move ``chosen`` ([B] tensors; names a run does
        not use are skipped); ``steps_done`` (and a per-call ``total_steps``) may be
        one number or an array with one entry per run."""
        new = self.space.apply(chosen, torch.as_tensor(actions, dtype=torch.float32))
        position = self.position(steps_done, total_steps)
        if isinstance(position, np.ndarray):
            position = torch.as_tensor(position, dtype=torch.float32)
        return Decision(new, self.space.scheduled(new, position), position)

    def decide_one(
        self,
        chosen: Mapping[str, Any],
        action: Sequence[float] | np.ndarray,
        steps_done: float,
    ) -> Decision:
        """One run on float32 scalars: ``action`` has one component per spec.

        Raises:
            ValueError: ``action`` does not have one component per hyperparameter.
        """
        action = np.asarray(action, dtype=np.float32)
        k = len(self.space)
        if action.size != k:
            raise ValueError(
                f"the policy returned an action of shape {action.shape}, expected {k} components "
                f"{list(self.space.names)} for one run"
            )
        new = dict(chosen)
        new.update(self.space.apply_one(chosen, action.reshape(k)))
        position = self.position(steps_done)
        return Decision(new, self.in_effect_one(new, position), position)

    def in_effect_one(self, chosen: Mapping[str, Any], position: float) -> dict[str, float]:
        """One run's values in effect for an interval whose prior reads ``position``."""
        return {name: float(v) for name, v in self.space.scheduled_one(chosen, position).items()}
