"""Benchmark methods as objects: how each is made and what it costs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from agents.controllers.adaptive import HypergradientController, PlateauController
from agents.controllers.rollout import RolloutResult
from agents.controllers.schedules import (
    ConstantController,
    CosineSchedule,
    ScheduleController,
    StepDecaySchedule,
)
from hpo_env.errors import ConfigError, unknown_name_error

ControllerFactory = Callable[[Any], Any]
"""``factory(task) -> Controller``; module-level so that it pickles (Ray workers)."""
MethodRunner = Callable[..., RolloutResult]
"""``runner(task, seeds, *, val_every, initial_lr, initial_hparams) -> RolloutResult``:
for methods that are not a controller on one batched run (e.g. PBT over Ray Tune)."""


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A benchmark method: how to make it, and what it costs."""

    name: str
    """Label in reports."""
    factory: ControllerFactory | None = None
    """``factory(task) -> Controller`` (set this or ``runner``)."""
    runner: MethodRunner | None = None
    """A whole rollout replacement (set this or ``factory``)."""
    compute_multiple: float = 1.0
    """Training compute relative to one run (a population of 8 costs 8)."""
    in_sweep: bool = True
    """Run it in the initial-learning-rate robustness sweep."""
    description: str = ""
    """One line for the report."""

    def __post_init__(self) -> None:
        if (self.factory is None) == (self.runner is None):
            raise ConfigError(f"method {self.name!r} needs exactly one of factory or runner")
        if not (math.isfinite(self.compute_multiple) and self.compute_multiple > 0):
            raise ConfigError(f"compute_multiple must be > 0, got {self.compute_multiple!r}")


def make_constant_default(task: Any) -> ConstantController:
    return ConstantController(name="constant_default")


def make_cosine(task: Any) -> ScheduleController:
    return ScheduleController(CosineSchedule(), name="cosine")


def make_step_decay(task: Any) -> ScheduleController:
    return ScheduleController(StepDecaySchedule(), name="step_decay")


def make_plateau(task: Any) -> PlateauController:
    return PlateauController()


def make_hypergradient(task: Any) -> HypergradientController:
    return HypergradientController()


RESERVED_METHODS = ("policy", "best_of_grid")
"""Names the protocol itself produces (the policy, and the grid oracle)."""

DEFAULT_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "constant_default",
        make_constant_default,
        description="constant at the start values (task defaults; SB3-style lr and ent_coef on control tasks)",
    ),
    MethodSpec("cosine", make_cosine, description="half-cosine decay to 0 from the start lr"),
    MethodSpec("step_decay", make_step_decay, description="x0.1 at 50% and 75% of the budget"),
    MethodSpec(
        "plateau",
        make_plateau,
        description="ReduceLROnPlateau(factor 0.5, patience 2) on validation",
    ),
    MethodSpec(
        "hypergradient",
        make_hypergradient,
        description="multiplicative hypergradient descent on interval gradient cosines",
    ),
)
"""The baselines of `run_benchmark` unless it is given others."""


def select_methods(names: Sequence[str], available: Sequence[MethodSpec]) -> list[MethodSpec]:
    """The methods called ``names`` among ``available`` (for the CLI's ``--methods``)."""
    by_name = {m.name: m for m in available}
    for name in names:
        if name not in by_name:
            raise unknown_name_error("method", name, by_name)
    return [by_name[name] for name in names]


def check_methods(methods: Sequence[MethodSpec]) -> None:
    """Distinct names, none reserved by the protocol."""
    names = [m.name for m in methods]
    bad = [n for n in names if n in RESERVED_METHODS]
    dup = sorted({n for n in names if names.count(n) > 1})
    if bad or dup:
        raise ConfigError(
            f"method names must be distinct and not in {RESERVED_METHODS}, got reserved {bad} "
            f"and duplicated {dup}"
        )
