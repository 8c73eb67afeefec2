"""Baselines the tuning policy is compared with, on batched runs and in plain PyTorch.

Two shapes of the same rules:

- **Schedules** (`ConstantSchedule`, `CosineSchedule`, `StepDecaySchedule`) are
  functions of the fraction of the budget used. In a plain PyTorch loop call
  ``schedule.torch_lr(step, total_steps, base_lr)`` or wrap an optimizer with
  ``schedule.torch_scheduler(optimizer, total_steps)`` (a ``LambdaLR``).
- **Controllers** implement `agents.evaluation.Controller` on batched runs
  (per-run [B] tensors, one decision per control interval of K updates):
  `ScheduleController` (any schedule), `ConstantController` (fixed values,
  the grid oracle's members and the SB3-style defaults), `PlateauController`
  (ReduceLROnPlateau on the validation objective at the control cadence) and
  `HypergradientController` (hypergradient descent, interval approximation).
  In plain PyTorch, `torch_plateau` returns ``torch.optim.lr_scheduler.ReduceLROnPlateau``
  with the same settings and `HypergradientLR` applies the real per-step rule.

Methods the benchmark runs are registered by name (`register_method`), so an
optional backend (e.g. Population Based Training over Ray Tune) can add one.

Example:
    >>> CosineSchedule().torch_lr(step=100, total_steps=100, base_lr=0.1)
    0.0
    >>> StepDecaySchedule().torch_lr(step=60, total_steps=100, base_lr=0.1)
    0.01
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from hpo_env.stats import StepStats

if TYPE_CHECKING:
    from agents.evaluation import RolloutContext, RolloutResult

LR = "learning_rate"
ENTROPY = "entropy_coef"
SB3_PPO_LEARNING_RATE = 3e-4
"""stable-baselines3's PPO default learning rate (used when a control task has no defaults)."""
SB3_PPO_ENT_COEF = 0.0
"""stable-baselines3's PPO default entropy coefficient (same fallback)."""


# ----------------------------------------------------------------------------- schedules


def _check_progress(progress: float) -> float:
    if not math.isfinite(progress):
        raise ValueError(f"progress must be a finite fraction of the budget, got {progress!r}")
    return min(max(float(progress), 0.0), 1.0)


class Schedule:
    """A learning-rate multiplier as a function of the budget fraction used, in [0, 1]."""

    def multiplier(self, progress: float) -> float:
        """Factor applied to the base learning rate at ``progress`` (0 = start, 1 = end)."""
        raise NotImplementedError

    def __call__(self, progress: float) -> float:
        return self.multiplier(_check_progress(progress))

    def torch_lr(self, step: int, total_steps: int, base_lr: float) -> float:
        """Learning rate of update ``step`` (0-based) out of ``total_steps``."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        return float(base_lr) * self(step / total_steps)

    def torch_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """``torch.optim.lr_scheduler.LambdaLR`` following this schedule (call ``.step()`` per update)."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _ProgressLambda(self, total_steps))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


@dataclasses.dataclass(frozen=True)
class _ProgressLambda:
    # A picklable ``lr_lambda`` (LambdaLR cannot save plain lambdas).
    schedule: Schedule
    total_steps: int

    def __call__(self, step: int) -> float:
        return self.schedule(step / self.total_steps)


class ConstantSchedule(Schedule):
    """The base learning rate throughout."""

    def multiplier(self, progress: float) -> float:
        return 1.0

    def __repr__(self) -> str:
        return "ConstantSchedule()"


class CosineSchedule(Schedule):
    """Half-cosine decay from the base learning rate to ``final_ratio`` times it.

    Args:
        final_ratio: The floor reached at the end of the budget, as a fraction of the base.
    """

    def __init__(self, final_ratio: float = 0.0) -> None:
        if not (math.isfinite(final_ratio) and 0.0 <= final_ratio <= 1.0):
            raise ValueError(f"final_ratio must be in [0, 1], got {final_ratio=}")
        self.final_ratio = float(final_ratio)

    def multiplier(self, progress: float) -> float:
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_ratio + (1.0 - self.final_ratio) * cos

    def __repr__(self) -> str:
        return f"CosineSchedule(final_ratio={self.final_ratio})"


class StepDecaySchedule(Schedule):
    """Multiply the learning rate by ``gamma`` at each milestone (fractions of the budget).

    Args:
        milestones: Increasing budget fractions in (0, 1).
        gamma: Factor per milestone, in (0, 1].
    """

    def __init__(self, milestones: Iterable[float] = (0.5, 0.75), gamma: float = 0.1) -> None:
        milestones = tuple(float(m) for m in milestones)
        if (
            not milestones
            or any(not 0.0 < m < 1.0 for m in milestones)
            or list(milestones) != sorted(milestones)
        ):
            raise ValueError(
                f"milestones must be increasing fractions in (0, 1), got {milestones!r}"
            )
        if not (math.isfinite(gamma) and 0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1], got {gamma=}")
        self.milestones = milestones
        self.gamma = float(gamma)

    def multiplier(self, progress: float) -> float:
        passed = sum(progress >= m for m in self.milestones)
        return self.gamma**passed

    def __repr__(self) -> str:
        return f"StepDecaySchedule(milestones={self.milestones}, gamma={self.gamma})"


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
        progress = (self._step + 0.5) / ctx.control_steps
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


class PlateauRule:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode min, relative threshold) on [B] tensors.

    ``update(metric, lr)`` returns the new learning rates; entries whose
    metric is NaN (no validation this interval) are left untouched.
    """

    def __init__(
        self,
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-3,
        cooldown: int = 0,
        min_lr: float = 1e-6,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor=}")
        if patience < 0 or cooldown < 0:
            raise ValueError(f"patience and cooldown must be >= 0, got {patience=}, {cooldown=}")
        if not 0.0 <= threshold < 1.0 or min_lr < 0:
            raise ValueError(
                f"expected 0 <= threshold < 1 and min_lr >= 0, got {threshold=}, {min_lr=}"
            )
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.best: Tensor | None = None
        self.num_bad: Tensor | None = None
        self.cooldown_counter: Tensor | None = None

    def reset(self, n_runs: int) -> None:
        self.best = torch.full((n_runs,), math.inf)
        self.num_bad = torch.zeros(n_runs, dtype=torch.long)
        self.cooldown_counter = torch.zeros(n_runs, dtype=torch.long)

    def update(self, metric: Tensor, lr: Tensor) -> Tensor:
        if self.best is None or self.num_bad is None or self.cooldown_counter is None:
            self.reset(metric.shape[0])
        assert (
            self.best is not None and self.num_bad is not None and self.cooldown_counter is not None
        )
        seen = torch.isfinite(metric)
        better = seen & (metric < self.best * (1.0 - self.threshold))
        self.best = torch.where(better, metric, self.best)
        num_bad = torch.where(better, 0, self.num_bad + 1)
        in_cooldown = self.cooldown_counter > 0
        cooldown_counter = torch.where(
            in_cooldown, self.cooldown_counter - 1, self.cooldown_counter
        )
        num_bad = torch.where(in_cooldown, 0, num_bad)
        reduce = num_bad > self.patience
        new_lr = torch.where(reduce, (lr * self.factor).clamp_min(self.min_lr), lr)
        cooldown_counter = torch.where(reduce, self.cooldown, cooldown_counter)
        num_bad = torch.where(reduce, 0, num_bad)
        self.num_bad = torch.where(seen, num_bad, self.num_bad)
        self.cooldown_counter = torch.where(seen, cooldown_counter, self.cooldown_counter)
        return torch.where(seen, new_lr, lr)

    def torch_kwargs(self) -> dict[str, Any]:
        return {
            "mode": "min",
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": "rel",
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
        }

    def __repr__(self) -> str:
        return (
            f"PlateauRule(factor={self.factor}, patience={self.patience}, threshold={self.threshold}, "
            f"cooldown={self.cooldown}, min_lr={self.min_lr})"
        )


def torch_plateau(optimizer: torch.optim.Optimizer, rule: PlateauRule | None = None) -> Any:
    """``ReduceLROnPlateau`` for a plain PyTorch loop, with `PlateauController`'s settings."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, **(rule or PlateauRule()).torch_kwargs()
    )


class PlateauController(_ControllerBase):
    """ReduceLROnPlateau on the validation objective, counted in control intervals.

    Only validations the controller sees count (every ``val_every`` decisions);
    with ``val_every=0`` it never reduces. Defaults are scaled to episodes of a
    few dozen decisions (torch's ``patience=10`` would never fire).

    Args:
        factor, patience, threshold, cooldown, min_lr: As in torch's ReduceLROnPlateau.
        name: Label in reports.
    """

    def __init__(
        self,
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-3,
        cooldown: int = 0,
        min_lr: float = 1e-6,
        name: str = "plateau",
    ) -> None:
        super().__init__()
        self.rule = PlateauRule(factor, patience, threshold, cooldown, min_lr)
        self.name = name
        self._lr: Tensor | None = None

    def reset(self, context: RolloutContext) -> None:
        super().reset(context)
        self.rule.reset(context.n_runs)
        self._lr = self._base_lr()

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        assert self._lr is not None  # set by reset
        if stats is not None:
            self._lr = self.rule.update(stats.val_loss, self._lr)  # type: ignore[arg-type]
        return {LR: self._lr.clone()}

    def __repr__(self) -> str:
        return f"PlateauController({self.rule!r}, name={self.name!r})"


class HypergradientController(_ControllerBase):
    """Hypergradient descent (Baydin et al. 2018) at control-interval granularity.

    The real rule, ``lr ← lr + β · g_t · u_{t-1}`` per update, needs every
    gradient. A batched run only reports interval statistics, among them
    ``grad_cosine``: the cosine between the last gradient of this interval and
    of the previous one. This controller applies the *multiplicative* variant
    with that cosine standing in for the per-update one, summed over the K
    updates of the interval: ``lr ← lr · exp(clip(β · K · cos, ±ln 10^max_log10_step))``.
    Aligned successive gradients (too small a step) raise the learning rate,
    opposed ones (oscillation) lower it; the cap equals the policy's largest
    change per decision. It is an approximation: gradients K updates apart are
    less correlated than consecutive ones, so it reacts more weakly than
    per-update HD.

    Args:
        beta: Per-update multiplicative hyper-learning-rate.
        max_log10_step: Largest change per decision, in decades.
        min_lr, max_lr: Bounds of the learning rate.
        name: Label in reports.
    """

    def __init__(
        self,
        beta: float = 0.02,
        max_log10_step: float = 0.5,
        min_lr: float = 1e-6,
        max_lr: float = 10.0,
        name: str = "hypergradient",
    ) -> None:
        super().__init__()
        if not (math.isfinite(beta) and beta > 0) or not max_log10_step > 0:
            raise ValueError(f"beta and max_log10_step must be > 0, got {beta=}, {max_log10_step=}")
        if not 0 <= min_lr < max_lr:
            raise ValueError(f"expected 0 <= min_lr < max_lr, got {min_lr=}, {max_lr=}")
        self.beta, self.max_log10_step = float(beta), float(max_log10_step)
        self.min_lr, self.max_lr = float(min_lr), float(max_lr)
        self.name = name
        self._lr: Tensor | None = None

    def reset(self, context: RolloutContext) -> None:
        super().reset(context)
        self._lr = self._base_lr()

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        ctx = self._ctx()
        assert self._lr is not None  # set by reset
        if stats is not None:
            cos = torch.nan_to_num(stats.grad_cosine, nan=0.0).clamp(-1.0, 1.0)
            cap = self.max_log10_step * math.log(10.0)
            exponent = (self.beta * ctx.updates_per_step * cos).clamp(-cap, cap)
            self._lr = (self._lr * torch.exp(exponent)).clamp(self.min_lr, self.max_lr)
        return {LR: self._lr.clone()}

    def __repr__(self) -> str:
        return (
            f"HypergradientController(beta={self.beta}, max_log10_step={self.max_log10_step}, "
            f"min_lr={self.min_lr}, max_lr={self.max_lr})"
        )


class HypergradientLR:
    """Per-update hypergradient descent for any ``torch.optim`` optimizer (SGD-HD / Adam-HD).

    Call ``step()`` after ``loss.backward()`` and *before* ``optimizer.step()``.
    With ``u_{t-1} = (θ_{t-1} − θ_t) / lr_{t-1}``, the direction of the
    previous update (the gradient for plain SGD, Adam's normalised moment for
    Adam), the rule is Baydin et al.'s ``lr ← lr + β · g_t · u_{t-1}``
    (``multiplicative=True``: ``lr ← lr · (1 + β · cos(g_t, u_{t-1}))``, scale-free).

    Args:
        optimizer: The optimizer whose ``param_groups[i]["lr"]`` is adapted.
        beta: Hyper-learning-rate (the paper: 1e-3 for SGD-HD, 1e-7 for Adam-HD; ~0.02 multiplicative).
        multiplicative: Use the normalised, scale-free variant.
        min_lr: Lower bound of the learning rate.

    Example:
        >>> hd = HypergradientLR(optimizer, beta=1e-3)  # doctest: +SKIP
        >>> loss.backward(); hd.step(); optimizer.step()  # doctest: +SKIP
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        beta: float = 1e-3,
        multiplicative: bool = False,
        min_lr: float = 0.0,
    ) -> None:
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {beta=}")
        self.optimizer = optimizer
        self.beta, self.multiplicative, self.min_lr = (
            float(beta),
            bool(multiplicative),
            float(min_lr),
        )
        self._snapshots: list[list[Tensor] | None] = [None] * len(optimizer.param_groups)
        self._lr_used: list[float] = [0.0] * len(optimizer.param_groups)

    @torch.no_grad()
    def step(self) -> list[float]:
        """Adapt every group's learning rate; returns the new values."""
        for i, group in enumerate(self.optimizer.param_groups):
            params = list(group["params"])
            snapshot = self._snapshots[i]
            if snapshot is not None and self._lr_used[i] > 0:
                dot = torch.zeros((), dtype=torch.float64)
                g_sq = torch.zeros((), dtype=torch.float64)
                u_sq = torch.zeros((), dtype=torch.float64)
                for p, before in zip(params, snapshot):
                    if p.grad is None:
                        continue
                    u = (before - p).double() / self._lr_used[i]
                    g = p.grad.double()
                    dot += (g * u).sum()
                    g_sq += g.square().sum()
                    u_sq += u.square().sum()
                if self.multiplicative:
                    cos = dot / (g_sq.sqrt() * u_sq.sqrt()).clamp_min(1e-30)
                    new_lr = group["lr"] * (1.0 + self.beta * float(cos))
                else:
                    new_lr = group["lr"] + self.beta * float(dot)
                if math.isfinite(new_lr):
                    group["lr"] = max(new_lr, self.min_lr)
            self._snapshots[i] = [p.detach().clone() for p in params]
            self._lr_used[i] = float(group["lr"])
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def __repr__(self) -> str:
        return f"HypergradientLR(beta={self.beta}, multiplicative={self.multiplicative}, min_lr={self.min_lr})"


# ----------------------------------------------------------------------------- methods


def is_control_task(task: Any) -> bool:
    """Whether the task's runs are RL runs (they take an entropy coefficient)."""
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
"""``factory(task) -> Controller``; module-level so that it pickles (Ray workers)."""
MethodRunner = Callable[..., "RolloutResult"]
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
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {name!r}, expected one of {sorted(_METHODS)}{hint}")
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
