"""Fixed schedules as controllers, and a task's default hyperparameters.

The schedules themselves (constant, step decay, cosine with warm-up, WSD) have one
definition, in `hpo_env.schedules`, shared with the environment's annealing prior
and the transfer suite's baselines; they are re-exported here for the controllers'
users."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from agents.controllers.protocol import RolloutContext
from hpo_env.clock import prior_position
from hpo_env.protocol import is_rl_task
from hpo_env.schedules import (
    ConstantSchedule,
    CosineSchedule,
    CosineWarmupSchedule,
    Schedule,
    StepDecaySchedule,
    WarmupStableDecaySchedule,
)
from hpo_env.stats import StepStats

__all__ = [
    "ENTROPY",
    "LR",
    "ConstantController",
    "ConstantSchedule",
    "CosineSchedule",
    "CosineWarmupSchedule",
    "Schedule",
    "ScheduleController",
    "StepDecaySchedule",
    "WarmupStableDecaySchedule",
    "default_constant_hparams",
    "is_control_task",
]

LR = "learning_rate"
ENTROPY = "entropy_coef"
SB3_PPO_LEARNING_RATE = 3e-4
"""stable-baselines3's PPO default learning rate (used when a control task has no defaults)."""
SB3_PPO_ENT_COEF = 0.0
"""stable-baselines3's PPO default entropy coefficient (same fallback)."""


# ----------------------------------------------------------------------------- controllers


def _full(n: int, value: float | Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32).reshape(-1).expand(n).clone()


class _ControllerBase:
    name = "controller"

    def __init__(self) -> None:
        self.context: RolloutContext | None = None

    def reset(self, context: RolloutContext) -> None:
        self.context = context

    def _ctx(self) -> RolloutContext:
        if self.context is None:
            raise RuntimeError(f"{type(self).__name__}.decide called before reset(context)")
        return self.context

    def _base_lr(self) -> Tensor:
        ctx = self._ctx()
        if LR not in ctx.initial_hparams:
            raise ValueError(
                f"{self!r} controls 'learning_rate', but the runs of task "
                f"{getattr(ctx.task, 'name', ctx.task)!r} only accept {sorted(ctx.initial_hparams)}"
            )
        return ctx.initial_hparams[LR].float().clone()


class ScheduleController(_ControllerBase):
    """A `Schedule` on batched runs, starting from each run's initial learning rate.

    The learning rate is piecewise constant over the K updates of an interval;
    interval t (of T) uses the schedule at its midpoint ``(t + 0.5) / T``, the
    closest constant to the per-update schedule of a plain loop.

    Args:
        schedule: The schedule.
        name: Label in reports.
    """

    def __init__(self, schedule: Schedule, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.name = name or type(schedule).__name__.removesuffix("Schedule").lower()
        self._step = 0
        self._base: Tensor | None = None

    def reset(self, context: RolloutContext) -> None:
        super().reset(context)
        self._step = 0
        self._base = self._base_lr()

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        ctx = self._ctx()
        assert self._base is not None  # set by reset
        progress = prior_position(self._step, 1, ctx.control_steps)
        self._step += 1
        return {LR: self._base * self.schedule(progress)}

    def __repr__(self) -> str:
        return f"ScheduleController({self.schedule!r}, name={self.name!r})"


class ConstantController(_ControllerBase):
    """Fixed hyperparameter values for every run (values left out keep their initial value).

    Args:
        hparams: name -> value, e.g. ``{"learning_rate": 0.01}``; names a run
            does not accept are skipped.
        name: Label in reports.
    """

    def __init__(self, hparams: Mapping[str, float] | None = None, name: str = "constant") -> None:
        super().__init__()
        self.hparams = {str(k): float(v) for k, v in (hparams or {}).items()}
        for key, value in self.hparams.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite value >= 0, got {value!r}")
        self.name = name

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        ctx = self._ctx()
        return {
            k: _full(ctx.n_runs, v) for k, v in self.hparams.items() if k in ctx.initial_hparams
        }

    def __repr__(self) -> str:
        return f"ConstantController({self.hparams!r}, name={self.name!r})"


def is_control_task(task: Any) -> bool:
    """Whether the task's runs are RL runs (they say so, or take an entropy coefficient)."""
    if is_rl_task(task):
        return True
    defaults = getattr(task, "default_hparams", None)
    if defaults is not None and ENTROPY in dict(defaults()):
        return True
    return "control" in str(getattr(task, "family", "")).lower()


def default_constant_hparams(task: Any) -> dict[str, float]:
    """The constant-default baseline's values: ``task.default_hparams()``.

    For control tasks this is the stable-baselines3-style setting (the
    family's constant learning rate, 3e-4-like, and constant entropy
    coefficient), falling back to SB3's PPO defaults if the task has none.
    """
    method = getattr(task, "default_hparams", None)
    values = {str(k): float(v) for k, v in dict(method()).items()} if method is not None else {}
    if is_control_task(task):
        values.setdefault(LR, SB3_PPO_LEARNING_RATE)
        values.setdefault(ENTROPY, SB3_PPO_ENT_COEF)
    return values


ControllerFactory = Callable[[Any], Any]
