"""The seams between `hpo_env` and whatever supplies training runs (`tasks/`).

`hpo_env` never imports a concrete task: it talks to these protocols only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from hpo_env.stats import StepStats


@runtime_checkable
class BatchedRun(Protocol):
    """B independent base-network training runs advanced in lockstep.

    Runs never interact: a diverged run (NaN parameters) must not change any
    other run's numbers, and `train` must not raise because of it.
    Run i depends only on the task and ``seeds[i]``, never on B or on the other
    runs, so a run can be reproduced alone with B=1 (up to float rounding).
    """

    @property
    def n_runs(self) -> int: ...

    @property
    def hparam_names(self) -> tuple[str, ...]:
        """The hyperparameters these runs accept, e.g. ("learning_rate", "momentum")."""
        ...

    def get_hyperparameters(self) -> dict[str, Tensor]:
        """Current values, each a float32 [B] tensor."""
        ...

    def set_hyperparameters(self, values: Mapping[str, Tensor]) -> None:
        """Set some or all of `hparam_names`; each value is a [B] tensor."""
        ...

    def train(self, n_updates: int) -> StepStats:
        """Run ``n_updates`` inner updates with the current hyperparameters.

        Returns the interval's statistics as defined in `hpo_env.stats` with
        ``val_loss`` and ``progress`` left unset (the environment fills them).
        """
        ...

    def evaluate(self, fraction: float = 1.0) -> Tensor:
        """Validation objective of every run, float32 [B] on the CPU; lower is better, > 0.

        ``fraction`` < 1 measures it on a fixed subsample of that share of the
        validation set (the same examples or episodes at every call, nested: a
        larger fraction's subsample contains a smaller one's); 1.0 is the full set.
        A run may also offer ``evaluate_prefixes(fractions) -> [F, B]``, several
        fractions from one pass (see `hpo_env.interval.evaluate_fractions`).
        """
        ...

    def reset_runs(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        """Start runs ``indices`` afresh (new data split, initialisation and initial
        hyperparameters drawn from ``seeds``), as if built with those seeds."""
        ...


@runtime_checkable
class Task(Protocol):
    """A picklable description of one base-training problem (a family plus its
    structural configuration) that can build batched runs of itself."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def control_steps(self) -> int:
        """Control decisions per episode (the episode length T)."""
        ...

    @property
    def updates_per_step(self) -> int:
        """Inner updates per control decision (K)."""
        ...

    def build(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> BatchedRun:
        """B = len(seeds) runs computing on ``device`` (see `hpo_env.device`); run i is
        determined by ``seeds[i]``. Whatever the device, the run's results are on the CPU."""
        ...


def is_rl_task(task: object) -> bool:
    """Whether a task's runs are reinforcement-learning runs: a task says so with a
    true ``is_rl`` attribute (optional; the control family sets it). Their learning
    rate reads the space's RL prior (`hpo_env.space.HyperparameterSpace.for_rl`)."""
    return bool(getattr(task, "is_rl", False))


@runtime_checkable
class TaskSampler(Protocol):
    """Something that draws tasks, e.g. `tasks.TaskDistribution` restricted to a split."""

    def sample(self, rng: np.random.Generator) -> Task: ...
