"""The one definition of each learning-rate schedule: constant, step decay, cosine with
warm-up, warm-up/stable/decay (WSD, linear decay).

A schedule is a small, picklable object mapping the fraction of the budget used
to a multiplier of the base value. It serves every caller, each through the
reading it needs:

- ``schedule(progress)``: Python float (float64) arithmetic; the benchmark
  controllers read it at each control interval's midpoint.
- ``schedule.tensor(progress)``: the same formula on a float32 tensor (the
  environment's annealing prior, `hpo_env.space.PRIORS`, and the batched runs).
- ``schedule.scalar_f32(progress)``: the tensor formula on one float32 scalar, op
  for op (the deployed scheduler's path; it rounds exactly as the tensor does).
- ``schedule.step_factor(step, total_steps)``: the factor of update ``step``
  (0-based) of a plain per-update loop (``torch.optim.lr_scheduler.LambdaLR``),
  with the warm-up and decay lengths rounded to whole updates: what practitioners
  run, and what the transfer suite's baselines use.

Example:
    >>> s = CosineWarmupSchedule(warmup=0.0)
    >>> s(0.0), s(1.0)
    (1.0, 0.0)
    >>> round(CosineWarmupSchedule().step_factor(0, 100), 3)  # first update of a 5-step warm-up
    0.2
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _check_progress(progress: float) -> float:
    if not math.isfinite(progress):
        raise ValueError(f"progress must be a finite fraction of the budget, got {progress!r}")
    return min(max(float(progress), 0.0), 1.0)


def _check_fraction(name: str, value: float, *, high_open: bool = True) -> float:
    ok = math.isfinite(value) and 0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0
    if not ok:
        bound = "[0, 1)" if high_open else "[0, 1]"
        raise ValueError(f"{name} must be in {bound}, got {name}={value!r}")
    return float(value)


_SCRATCH = threading.local()


def torch_f32(fn: Callable[..., Tensor], x: np.float32) -> np.float32:
    """``fn(t, out=t)`` (a torch float32 kernel) on one float32 scalar: torch's own
    rounding, which NumPy's or libm's transcendental functions need not share.

    The value goes in and out through a NumPy view of a one-element buffer (one per
    thread) so that the kernel is the only torch call: this runs at every decision
    inside the user's training loop (here, and for `hpo_env.feature_ops.ScalarOps`'s
    logarithms)."""
    scratch = getattr(_SCRATCH, "pair", None)
    if scratch is None:
        with torch.inference_mode(False):  # writable in and out of inference mode
            buffer = torch.empty(1, dtype=torch.float32)
        scratch = _SCRATCH.pair = (buffer, buffer.numpy())
    buffer, view = scratch
    view[0] = x
    fn(buffer, out=buffer)
    return view[0]


class Schedule:
    """A multiplier of the base value as a function of the budget fraction used, in [0, 1]."""

    def multiplier(self, progress: float) -> float:
        """Factor at ``progress`` (0 = start, 1 = end), already clamped to [0, 1]."""
        raise NotImplementedError

    def __call__(self, progress: float) -> float:
        return self.multiplier(_check_progress(progress))

    def step_factor(self, step: int, total_steps: int) -> float:
        """Factor of update ``step`` (0-based) of ``total_steps`` in a per-update loop.

        The default reads the schedule at ``step / total_steps``; schedules with
        a warm-up or a decay phase round those to whole updates instead."""
        return self(step / total_steps)

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

    def step_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """``LambdaLR`` following `step_factor` (the per-update reading; ``.step()`` per update)."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _StepLambda(self, total_steps))

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


@dataclasses.dataclass(frozen=True)
class _StepLambda:
    schedule: Schedule
    total_steps: int

    def __call__(self, step: int) -> float:
        return self.schedule.step_factor(step, self.total_steps)


class ConstantSchedule(Schedule):
    """The base value throughout."""

    def multiplier(self, progress: float) -> float:
        return 1.0

    def step_factor(self, step: int, total_steps: int) -> float:
        return 1.0

    def __repr__(self) -> str:
        return "ConstantSchedule()"


class StepDecaySchedule(Schedule):
    """Multiply the value by ``gamma`` at each milestone (fractions of the budget).

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


def _half_cosine(fraction: float, final_ratio: float) -> float:
    """``final_ratio`` + the rest times a half cosine from 1 (``fraction`` 0) to 0 (1)."""
    cos = 0.5 * (1.0 + math.cos(math.pi * fraction))
    return final_ratio + (1.0 - final_ratio) * cos


class CosineWarmupSchedule(Schedule):
    """Linear warm-up over the first ``warmup`` of the budget, then a half cosine from
    the base value down to ``final_ratio`` times it.

    ``warmup=0`` is the plain half-cosine decay. The environment's annealing prior
    is ``CosineWarmupSchedule(warmup=0.05)`` read at each interval's midpoint
    (`tensor`, `scalar_f32`); the transfer suite's ``cosine_warmup`` baseline is the
    same schedule per update (`step_factor`).

    Args:
        warmup: Fraction of the budget spent warming up, in [0, 1).
        final_ratio: The floor reached at the end of the budget, as a fraction of the base.
    """

    def __init__(self, warmup: float = 0.05, final_ratio: float = 0.0) -> None:
        self.warmup = _check_fraction("warmup", warmup)
        if not (math.isfinite(final_ratio) and 0.0 <= final_ratio <= 1.0):
            raise ValueError(f"final_ratio must be in [0, 1], got {final_ratio=}")
        self.final_ratio = float(final_ratio)

    def multiplier(self, progress: float) -> float:
        w = self.warmup
        if progress < w:
            return progress / w
        return _half_cosine((progress - w) / (1.0 - w), self.final_ratio)

    def step_factor(self, step: int, total_steps: int) -> float:
        # LambdaLR evaluates factor(0) for the first update: the warm-up starts above zero.
        warmup = max(1, round(self.warmup * total_steps)) if self.warmup > 0 else 0
        if step < warmup:
            return (step + 1) / warmup
        fraction = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return _half_cosine(fraction, self.final_ratio)

    def tensor(self, progress: Tensor) -> Tensor:
        """`multiplier` on a float32 tensor of progresses (clamped to [0, 1])."""
        w = self.warmup
        progress = progress.clamp(0.0, 1.0)
        decay = 0.5 * (1.0 + torch.cos(math.pi * (progress - w) / (1.0 - w)))
        if self.final_ratio != 0.0:
            decay = self.final_ratio + (1.0 - self.final_ratio) * decay
        if w == 0.0:
            return decay
        return torch.where(progress < w, progress / w, decay)

    def scalar_f32(self, progress: float) -> np.float32:
        """`tensor` on one float32 scalar, op for op (constants cast to float32 first,
        as torch casts a Python scalar that meets a float32 tensor)."""
        f32 = np.float32
        w = self.warmup
        p = f32(progress)
        p = f32(0.0) if p < 0.0 else f32(1.0) if p > 1.0 else p  # clamp; NaN stays NaN
        if p < f32(w):
            return f32(p / f32(w))
        angle = f32(math.pi) * (p - f32(w)) / f32(1.0 - w)
        decay = f32(0.5) * (f32(1.0) + torch_f32(torch.cos, angle))
        if self.final_ratio != 0.0:
            decay = f32(self.final_ratio) + f32(1.0 - self.final_ratio) * decay
        return decay

    def __repr__(self) -> str:
        return f"CosineWarmupSchedule(warmup={self.warmup}, final_ratio={self.final_ratio})"


class CosineSchedule(CosineWarmupSchedule):
    """Half-cosine decay from the base value to ``final_ratio`` times it: `CosineWarmupSchedule`
    without warm-up (the formula is that class's).

    Args:
        final_ratio: The floor reached at the end of the budget, as a fraction of the base.
    """

    def __init__(self, final_ratio: float = 0.0) -> None:
        super().__init__(warmup=0.0, final_ratio=final_ratio)

    def __repr__(self) -> str:
        return f"CosineSchedule(final_ratio={self.final_ratio})"


class WarmupStableDecaySchedule(Schedule):
    """Warm-up (linear, over ``warmup``), the base value, then linear decay to zero over
    the last ``decay`` of the budget (WSD; ``warmup=0, decay=1`` is plain linear decay).

    Args:
        warmup: Fraction of the budget spent warming up, in [0, 1).
        decay: Fraction of the budget spent decaying, in (0, 1].
    """

    def __init__(self, warmup: float = 0.05, decay: float = 0.2) -> None:
        self.warmup = _check_fraction("warmup", warmup)
        if not (math.isfinite(decay) and 0.0 < decay <= 1.0) or warmup + decay > 1.0:
            raise ValueError(f"expected 0 < decay <= 1 - warmup, got {decay=}, {warmup=}")
        self.decay = float(decay)

    def multiplier(self, progress: float) -> float:
        if progress < self.warmup:
            return progress / self.warmup
        decay_start = 1.0 - self.decay
        if progress < decay_start:
            return 1.0
        return max(0.0, (1.0 - progress) / self.decay)

    def step_factor(self, step: int, total_steps: int) -> float:
        warmup = max(1, round(self.warmup * total_steps)) if self.warmup > 0 else 0
        decay_start = total_steps - max(1, round(self.decay * total_steps))
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        return max(0.0, (total_steps - step) / (total_steps - decay_start))

    def __repr__(self) -> str:
        return f"WarmupStableDecaySchedule(warmup={self.warmup}, decay={self.decay})"


PRIOR_SCHEDULES: dict[str, CosineWarmupSchedule] = {"cosine_warmup": CosineWarmupSchedule(0.05)}
"""The environment's annealing priors by name (a bundle records the name, not code)."""
