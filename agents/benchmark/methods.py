"""Benchmark methods as objects: how each is made and what it costs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from agents.controllers.adaptive import HypergradientController, PlateauController
from agents.controllers.rollout import RolloutResult
from agents.controllers.schedules import (
    ConstantController,
    CosineSchedule,
    ScheduleController,
    StepDecaySchedule,
)
from hpo_env.errors import unknown_name_error

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
            raise ValueError(f"method {self.name!r} needs exactly one of factory or runner")
        if not (math.isfinite(self.compute_multiple) and self.compute_multiple > 0):
            raise ValueError(f"compute_multiple must be > 0, got {self.compute_multiple!r}")


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

_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    factory: ControllerFactory | None = None,
    *,
    runner: MethodRunner | None = None,
    compute_multiple: float = 1.0,
    in_sweep: bool = True,
    description: str = "",
    overwrite: bool = False,
) -> MethodSpec:
    """Add a benchmark method (e.g. Population Based Training from `agents.ray_backend`).

    Args:
        name: Label in reports; not one of `RESERVED_METHODS`.
        factory: ``factory(task) -> Controller``, module-level (it is pickled to workers).
        runner: Instead of a factory, ``runner(task, seeds, *, val_every,
            initial_lr, initial_hparams) -> RolloutResult``.
        compute_multiple: Compute relative to one run, shown in the report.
        in_sweep: Include it in the robustness sweep.
        description: One line for the report.
        overwrite: Replace an existing method of that name.
    """
    if not isinstance(name, str) or not name or name in RESERVED_METHODS:
        raise ValueError(
            f"method name must be a non-empty string not in {RESERVED_METHODS}, got {name!r}"
        )
    if name in _METHODS and not overwrite:
        raise ValueError(
            f"method {name!r} is already registered; pass overwrite=True to replace it"
        )
    spec = MethodSpec(name, factory, runner, compute_multiple, in_sweep, description)
    _METHODS[name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        raise unknown_name_error("method", name, _METHODS)
    return _METHODS[name]


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_METHODS)


register_method(
    "constant_default",
    make_constant_default,
    description="constant at the start values (task defaults; SB3-style lr and ent_coef on control tasks)",
)
register_method("cosine", make_cosine, description="half-cosine decay to 0 from the start lr")
register_method("step_decay", make_step_decay, description="x0.1 at 50% and 75% of the budget")
register_method(
    "plateau", make_plateau, description="ReduceLROnPlateau(factor 0.5, patience 2) on validation"
)
register_method(
    "hypergradient",
    make_hypergradient,
    description="multiplicative hypergradient descent on interval gradient cosines",
)


