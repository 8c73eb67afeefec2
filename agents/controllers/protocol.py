"""The seam between a run and whatever decides its hyperparameters: `Controller`, `PolicyLike`, `RolloutContext`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from hpo_env.features import FeatureExtractor
from hpo_env.protocol import Task
from hpo_env.space import HyperparameterSpace
from hpo_env.stats import StepStats


@dataclasses.dataclass(frozen=True)
class RolloutContext:
    """What a controller learns about the runs before its first decision."""

    task: Task
    """The task being trained."""
    n_runs: int
    """B, the number of runs decided for at once."""
    control_steps: int
    """Decisions per run (T)."""
    updates_per_step: int
    """Inner updates per decision (K)."""
    val_every: int
    """Cadence (in decisions) at which ``StepStats.val_loss`` is filled; 0 = never."""
    initial_hparams: Mapping[str, Tensor]
    """The runs' hyperparameters before the first decision, each float32 [B]."""
    first_val: Tensor
    """Validation objective before any update, float32 [B]."""


@runtime_checkable
class Controller(Protocol):
    """Decides B runs' hyperparameters once per control interval.

    ``reset`` is called once per rollout; then ``decide(None)`` before the
    first interval and ``decide(stats)`` after each later one, where ``stats``
    carries ``progress``, ``val_loss`` (NaN off the validation cadence) and
    ``hparams`` (the values in effect during that interval). ``decide``
    returns the values for the next interval: a subset of the run's
    hyperparameters, each a [B] tensor (hyperparameters left out keep their value).
    """

    name: str

    def reset(self, context: RolloutContext) -> None: ...

    def decide(self, stats: StepStats | None) -> Mapping[str, Tensor]: ...


class PolicyLike(Protocol):
    """What a controller, a scheduler or a callback needs from a tuning policy
    (`agents.policy.TuningPolicy` has it; ``metadata`` may be empty)."""

    space: HyperparameterSpace
    metadata: Mapping[str, Any]

    def feature_extractor(self, n_runs: int) -> FeatureExtractor: ...

    def act(self, obs: Any, deterministic: bool = True) -> Any: ...
