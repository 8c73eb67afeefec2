"""What practitioners use, as method objects for the one training loop (`loop.train_run`).

A method builds a `RunControl` for one run: the optimizer plus the hooks the
loop calls. Every method starts from the task's start learning rate (Prodigy
excepted: its ``lr=1.0`` is a multiplier of a learned step size, its default).
Methods are plain objects handed to the protocol; names map to them only at
the CLI edge (`default_methods`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch

from agents.benchmark.transfer.suite import TaskSpec
from hpo_env.errors import ConfigError
from hpo_env.schedules import CosineWarmupSchedule, WarmupStableDecaySchedule

ADAMW_WEIGHT_DECAY = 0.01
SGD_MOMENTUM = 0.9


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """The task's optimizer family at learning rate ``lr`` (torch defaults otherwise)."""
    # foreach=True: one fused call per step instead of one per tensor (these models
    # are tiny, so Python overhead dominates); the arithmetic is torch's usual update.
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    raise ConfigError(f"unknown optimizer {name!r}, expected sgd_momentum, adam, adamw or rmsprop")


class RunControl:
    """An optimizer and the loop's hooks; the base class keeps the rate constant.

    The loop calls, per update: ``loss.backward()``, `before_update`,
    ``optimizer.step()``, then (at the validation cadence) `eval_mode`,
    evaluation, `train_mode`, and finally `after_update` with the training loss
    and the validation loss if one was measured this update.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def before_update(self) -> None:
        """After ``backward()``, before ``optimizer.step()``."""

    def after_update(self, loss: float, val_loss: float | None) -> None:
        """After ``optimizer.step()`` (and the evaluation, when there was one)."""

    def eval_mode(self) -> None:
        """Before an evaluation (schedule-free swaps in its averaged weights)."""

    def train_mode(self) -> None:
        """Before training resumes."""

    @property
    def lr(self) -> float:
        """The effective learning rate of parameter group 0, for the curves."""
        return float(self.optimizer.param_groups[0]["lr"])


class _TorchSchedulerControl(RunControl):
    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        super().__init__(optimizer)
        self.scheduler = scheduler

    def after_update(self, loss: float, val_loss: float | None) -> None:
        self.scheduler.step()


@dataclasses.dataclass(frozen=True)
class Constant:
    """The user's start rate, unchanged. Also the oracle's grid points (``lr_multiplier``)."""

    name: str = "constant"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        return RunControl(make_optimizer(task.optimizer, params, start_lr))


@dataclasses.dataclass(frozen=True)
class CosineWarmup:
    """Linear warm-up over the first ``warmup_fraction`` of updates, then cosine to zero
    (`hpo_env.schedules.CosineWarmupSchedule`, per update)."""

    warmup_fraction: float = 0.05
    name: str = "cosine_warmup"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        optimizer = make_optimizer(task.optimizer, params, start_lr)
        schedule = CosineWarmupSchedule(warmup=self.warmup_fraction)
        return _TorchSchedulerControl(optimizer, schedule.step_scheduler(optimizer, task.n_updates))


@dataclasses.dataclass(frozen=True)
class WarmupStableDecay:
    """Warm-up (``warmup_fraction``), constant, then linear decay to zero over the last
    ``decay_fraction`` (`hpo_env.schedules.WarmupStableDecaySchedule`, per update)."""

    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2
    name: str = "warmup_stable_decay"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        optimizer = make_optimizer(task.optimizer, params, start_lr)
        schedule = WarmupStableDecaySchedule(self.warmup_fraction, self.decay_fraction)
        return _TorchSchedulerControl(optimizer, schedule.step_scheduler(optimizer, task.n_updates))


class _PlateauControl(RunControl):
    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        super().__init__(optimizer)
        self.scheduler = scheduler

    def after_update(self, loss: float, val_loss: float | None) -> None:
        if val_loss is not None:
            self.scheduler.step(val_loss)


@dataclasses.dataclass(frozen=True)
class Plateau:
    """torch's ReduceLROnPlateau on the validation loss, stepped once per validation.

    Settings are the project's `PlateauRule` (factor 0.5, patience 2): torch's
    ``patience=10`` validations would rarely fire within 20 validations a run.
    """

    name: str = "plateau"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        from agents.controllers.adaptive import torch_plateau

        optimizer = make_optimizer(task.optimizer, params, start_lr)
        return _PlateauControl(optimizer, torch_plateau(optimizer))


class _HypergradientControl(RunControl):
    def __init__(self, optimizer: torch.optim.Optimizer, rule: Any) -> None:
        super().__init__(optimizer)
        self.rule = rule

    def before_update(self) -> None:
        self.rule.step()


@dataclasses.dataclass(frozen=True)
class Hypergradient:
    """Per-update hypergradient descent (`agents.controllers.adaptive.HypergradientLR`).

    The multiplicative, scale-free variant, so that one ``beta`` serves SGD and
    the adaptive optimizers alike (the additive rule needs 1e-3 for SGD and
    1e-7 for Adam).
    """

    beta: float = 0.02
    name: str = "hypergradient"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        from agents.controllers.adaptive import HypergradientLR

        optimizer = make_optimizer(task.optimizer, params, start_lr)
        return _HypergradientControl(
            optimizer, HypergradientLR(optimizer, beta=self.beta, multiplicative=True, min_lr=1e-8)
        )


class _ScheduleFreeControl(RunControl):
    def eval_mode(self) -> None:
        self.optimizer.eval()  # type: ignore[attr-defined]

    def train_mode(self) -> None:
        self.optimizer.train()  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class ScheduleFree:
    """``schedulefree.SGDScheduleFree`` on SGD tasks, ``AdamWScheduleFree`` otherwise,
    at their defaults except the start rate; ``.eval()`` around every evaluation."""

    name: str = "schedule_free"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        import schedulefree

        if task.optimizer == "sgd_momentum":
            optimizer = schedulefree.SGDScheduleFree(params, lr=start_lr)
        else:
            optimizer = schedulefree.AdamWScheduleFree(params, lr=start_lr)
        return _ScheduleFreeControl(optimizer)


class _ProdigyControl(RunControl):
    @property
    def lr(self) -> float:
        # Prodigy's step size is d * lr; lr itself stays 1.0.
        group = self.optimizer.param_groups[0]
        return float(group["d"] * group["lr"])


@dataclasses.dataclass(frozen=True)
class ProdigyMethod:
    """``prodigyopt.Prodigy(lr=1.0)`` at its defaults: it learns its own step size,
    so it ignores the user's start rate (that is its selling point)."""

    name: str = "prodigy"

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        from prodigyopt import Prodigy

        return _ProdigyControl(Prodigy(params, lr=1.0))


class _PolicyControl(RunControl):
    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        super().__init__(optimizer)
        self.scheduler = scheduler

    def after_update(self, loss: float, val_loss: float | None) -> None:
        self.scheduler.step(loss, val_loss=val_loss)


class PolicyMethod:
    """The deployed tuning policy: ``TuningPolicy.load(ref).scheduler(optimizer, total_steps=N)``,
    stepped after every update with the validation loss at the task's cadence.

    Args:
        policy: A shipped bundle name, a bundle directory, or a loaded policy.
        name: Label in reports.
    """

    def __init__(self, policy: Any = "default", name: str = "policy") -> None:
        source = policy if isinstance(policy, str) else getattr(policy, "source", None)
        self.ref = source if source is not None else repr(policy)
        self._policy = policy if not isinstance(policy, str) else None
        self._reloadable = source is not None
        """Whether `TuningPolicy.load(ref)` gives the policy back (so pickling can drop it)."""
        self.name = name

    @property
    def policy(self) -> Any:
        if self._policy is None:
            from agents.policy.tuning_policy import TuningPolicy

            self._policy = TuningPolicy.load(self.ref)
        return self._policy

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes as the reference (a few bytes); each worker
        # loads the bundle once. A policy held only in memory travels whole.
        state = dict(self.__dict__)
        if self._reloadable:
            state["_policy"] = None
        return state

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> RunControl:
        optimizer = make_optimizer(task.optimizer, params, start_lr)
        return _PolicyControl(
            optimizer, self.policy.scheduler(optimizer, total_steps=task.n_updates)
        )

    def __repr__(self) -> str:
        return f"PolicyMethod({str(self.ref)!r})"


def default_baselines() -> list[Any]:
    """Every baseline of the protocol, at its settings (the oracle grid is added by the protocol)."""
    return [
        Constant(),
        CosineWarmup(),
        WarmupStableDecay(),
        Plateau(),
        Hypergradient(),
        ScheduleFree(),
        ProdigyMethod(),
    ]
