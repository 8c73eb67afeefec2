"""Controlled hyperparameters: names, bounds, log scale, and the action mapping.

An action is a vector in [-1, 1]^k. Component i multiplies hyperparameter i by
``10 ** (a_i * max_log10_step)`` (log-scale specs) or adds ``a_i * max_step``
(linear ones), then clips to the bounds: a bounded, multiplicative change
that allows a fast back-off from a run that is too hot.

A spec may carry an annealing *prior* (`PRIORS`): the policy then controls a
base value, and the run receives ``base * prior(progress)``, where progress is
the midpoint of the coming control interval. A policy that does nothing is
then cosine with warm-up from the user's start rate (what practitioners use);
what it learns is the correction: raise a rate that is too low, cut one that
is too hot, hold the rate where annealing does not pay. The environment and
every deploy path call `HyperparameterSpace.scheduled`, so training and
deployment stay one loop. Reinforcement-learning runs may read another prior
(``rl_prior``, `HyperparameterSpace.for_rl`): what serves an SB3 run at its
defaults need not be what serves a supervised one.

One deployed run takes the ``*_one`` twins (`HyperparameterSpace.apply_one`,
`HyperparameterSpace.scheduled_one`) on NumPy float32 scalars: a handful of
one-element tensor ops cost ~100x the arithmetic. Every constant is cast to
float32 first and the transcendental functions run on torch's own kernels, so
the twins round exactly as the tensor methods on one run do (tested bit for bit)
on any NumPy version.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from hpo_env.errors import unknown_name_error
from hpo_env.schedules import PRIOR_SCHEDULES, CosineWarmupSchedule, torch_f32

SAME_PRIOR = "same"
"""`HyperparameterSpec.rl_prior` meaning "the spec's own prior" (every bundle before it)."""

Real: TypeAlias = "float | np.floating[Any]"
"""A Python float or a NumPy float scalar (one run's value on the float path)."""


@dataclasses.dataclass(frozen=True)
class HyperparameterSpec:
    """One controlled hyperparameter."""

    name: str
    """Canonical name, e.g. ``learning_rate``, ``momentum``, ``weight_decay``, ``entropy_coef``."""
    low: float
    """Smallest allowed value (> 0 for log scale)."""
    high: float
    """Largest allowed value."""
    log: bool = True
    """Act in log10 space (multiplicative changes)."""
    max_step: float = 0.5
    """Largest change per decision: decades for log scale, absolute units otherwise."""
    prior: str | None = None
    """Annealing prior the value is multiplied by (a key of `PRIORS`), or None."""
    rl_prior: str | None = SAME_PRIOR
    """The prior on reinforcement-learning runs (`hpo_env.protocol.is_rl_task`; the SB3
    callback): `SAME_PRIOR` (``prior`` applies), None (none: the rate the policy chooses)
    or a key of `PRIORS`. Read through `HyperparameterSpace.for_rl`."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(
                f"HyperparameterSpec.name must be a non-empty string, got {self.name!r}"
            )
        for field in ("low", "high", "max_step"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.name}: {field} must be a finite number, got {value!r}")
        if not self.low < self.high:
            raise ValueError(
                f"{self.name}: expected low < high, got low={self.low!r}, high={self.high!r}"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log-scale bound must be > 0, got low={self.low!r}")
        if self.max_step <= 0:
            raise ValueError(f"{self.name}: max_step must be > 0, got {self.max_step!r}")
        for field, prior in (("prior", self.prior), ("rl_prior", self.rl_prior)):
            if prior is None or (field == "rl_prior" and prior == SAME_PRIOR):
                continue
            if prior not in PRIORS:
                raise unknown_name_error(f"{self.name}: {field}", prior, PRIORS)
            if not self.log:
                raise ValueError(
                    f"{self.name}: a prior multiplies the value, so the spec must be log-scale "
                    "(log=True)"
                )

    def clip(self, value: Tensor) -> Tensor:
        """``value`` inside the bounds; NaN goes to ``low``."""
        # NaN would survive clamp: send it to the lower bound, the safe side.
        value = torch.nan_to_num(value, nan=self.low, posinf=self.high, neginf=self.low)
        return value.clamp(self.low, self.high)

    def apply(self, value: Tensor, action: Tensor) -> Tensor:
        """New value after ``action`` (same shape as ``value``, entries in [-1, 1])."""
        action = torch.nan_to_num(action.to(value.dtype), nan=0.0).clamp(-1.0, 1.0)
        if self.log:
            new = value * torch.pow(10.0, action * self.max_step)
        else:
            new = value + action * self.max_step
        return self.clip(new)

    @functools.cached_property
    def _bounds32(self) -> tuple[np.float32, np.float32]:
        return np.float32(self.low), np.float32(self.high)

    def clip_one(self, value: Real) -> np.float32:
        """`clip` on one float32 scalar."""
        low, high = self._bounds32
        v = np.float32(value)
        if v != v:  # NaN
            return low
        return low if v < low else high if v > high else v  # min(max(v, low), high)

    def apply_one(self, value: Real, action: Real) -> np.float32:
        """`apply` on one run's float32 value and action component."""
        a = np.float32(action)
        if math.isnan(a):
            a = np.float32(0.0)
        a = np.float32(-1.0) if a < -1.0 else np.float32(1.0) if a > 1.0 else a
        if self.log:
            step = torch_f32(_pow10, a * np.float32(self.max_step))
            return self.clip_one(np.float32(value) * step)
        return self.clip_one(np.float32(value) + a * np.float32(self.max_step))

    def scheduled_one(self, value: Real, progress: float) -> np.float32:
        """`scheduled` on one run's float32 value."""
        if self.prior is None:
            return np.float32(value)
        return self.clip_one(np.float32(value) * SCALAR_PRIORS[self.prior](progress))

    def scheduled(self, value: Tensor, progress: Tensor | float) -> Tensor:
        """The value a run receives for an interval centred on ``progress``: ``value``
        times the prior's factor (clipped to the bounds), or ``value`` without a prior."""
        if self.prior is None:
            return value
        factor = PRIORS[self.prior](torch.as_tensor(progress, dtype=value.dtype))
        return self.clip(value * factor)

    def normalized(self, value: Tensor) -> Tensor:
        """Position of ``value`` inside the bounds, mapped to [-1, 1]."""
        value = self.clip(value)
        if self.log:
            lo, hi = math.log10(self.low), math.log10(self.high)
            pos = (torch.log10(value) - lo) / (hi - lo)
        else:
            pos = (value - self.low) / (self.high - self.low)
        return (2.0 * pos - 1.0).clamp(-1.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        if self.prior is None:
            del data["prior"]  # bundles without a prior read exactly as before
        if self.rl_prior == SAME_PRIOR:
            del data["rl_prior"]  # nor do bundles whose RL runs share it
        return data

    def for_rl(self) -> HyperparameterSpec:
        """This spec as reinforcement-learning runs read it: ``rl_prior`` as the prior."""
        if self.rl_prior == SAME_PRIOR:
            return self
        return dataclasses.replace(self, prior=self.rl_prior, rl_prior=SAME_PRIOR)


def cosine_warmup(progress: Tensor, warmup: float = 0.05) -> Tensor:
    """Linear warm-up over the first ``warmup`` of the run, then cosine to zero, on a
    float32 tensor: `hpo_env.schedules.CosineWarmupSchedule` (the one definition)."""
    return CosineWarmupSchedule(warmup).tensor(progress)


def _pow10(exponent: Tensor, *, out: Tensor) -> Tensor:
    return torch.pow(10.0, exponent, out=out)


def cosine_warmup_one(progress: float, warmup: float = 0.05) -> np.float32:
    """`cosine_warmup` on one float32 scalar, op for op (`CosineWarmupSchedule.scalar_f32`)."""
    return CosineWarmupSchedule(warmup).scalar_f32(progress)


PRIORS = {name: schedule.tensor for name, schedule in PRIOR_SCHEDULES.items()}
"""Annealing priors by name (a bundle records the name, not code), on float32 tensors."""
SCALAR_PRIORS = {name: schedule.scalar_f32 for name, schedule in PRIOR_SCHEDULES.items()}
"""`PRIORS` on one float32 scalar (the deployed scheduler's path), same keys."""


# Defaults chosen so that a decision can move the learning rate by up to ~3.2x
# and the bounds cover everything from frozen to divergent training.
LEARNING_RATE = HyperparameterSpec("learning_rate", 1e-6, 10.0, log=True, max_step=0.5)
MOMENTUM = HyperparameterSpec("momentum", 0.0, 0.99, log=False, max_step=0.1)
WEIGHT_DECAY = HyperparameterSpec("weight_decay", 1e-8, 1.0, log=True, max_step=0.5)
ENTROPY_COEF = HyperparameterSpec("entropy_coef", 1e-5, 0.5, log=True, max_step=0.5)

KNOWN_SPECS = {s.name: s for s in (LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, ENTROPY_COEF)}


class HyperparameterSpace:
    """An ordered set of `HyperparameterSpec`; the action space is ``Box(-1, 1, (k,))``.

    Example:
        >>> space = HyperparameterSpace.from_names(["learning_rate"])
        >>> space.apply({"learning_rate": torch.tensor([0.1])}, torch.tensor([[-1.0]]))
        {'learning_rate': tensor([0.0316])}
    """

    def __init__(self, specs: Iterable[HyperparameterSpec]) -> None:
        self.specs: tuple[HyperparameterSpec, ...] = tuple(specs)
        if not self.specs:
            raise ValueError("HyperparameterSpace needs at least one HyperparameterSpec, got none")
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"HyperparameterSpace has duplicate names: {names}")

    @classmethod
    def from_names(
        cls, names: Iterable[str], lr_prior: str | None = None, rl_lr_prior: str | None = SAME_PRIOR
    ) -> HyperparameterSpace:
        """Build from canonical names with their default bounds; ``lr_prior`` (a key of
        `PRIORS`) puts an annealing prior on the learning rate, ``rl_lr_prior`` another one
        (None: none) on reinforcement-learning runs' learning rate."""
        specs = []
        for name in names:
            if name not in KNOWN_SPECS:
                raise unknown_name_error("hyperparameter", name, KNOWN_SPECS)
            spec = KNOWN_SPECS[name]
            if name == "learning_rate":
                spec = dataclasses.replace(spec, prior=lr_prior, rl_prior=rl_lr_prior)
            specs.append(spec)
        return cls(specs)

    @classmethod
    def from_dicts(cls, items: Iterable[Mapping[str, object]]) -> HyperparameterSpace:
        return cls(HyperparameterSpec(**item) for item in items)  # type: ignore[arg-type]

    def to_dicts(self) -> list[dict[str, object]]:
        return [s.to_dict() for s in self.specs]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> HyperparameterSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(f"{name!r} is not in this space, which holds {list(self.names)}")

    def __repr__(self) -> str:
        return f"HyperparameterSpace({list(self.specs)!r})"

    def action_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-1.0, 1.0, shape=(len(self.specs),), dtype=np.float32)

    def apply(self, values: Mapping[str, Tensor], actions: Tensor) -> dict[str, Tensor]:
        """New values after ``actions`` of shape [B, k]; hyperparameters absent from
        ``values`` (a run that does not use them) are skipped."""
        actions = torch.as_tensor(actions, dtype=torch.float32)
        if actions.ndim == 1:
            actions = actions.unsqueeze(0)
        if actions.shape[-1] != len(self.specs):
            raise ValueError(
                f"expected actions with {len(self.specs)} components {list(self.names)}, "
                f"got shape {tuple(actions.shape)}"
            )
        out = {}
        for i, spec in enumerate(self.specs):
            if spec.name in values:
                out[spec.name] = spec.apply(values[spec.name].float(), actions[:, i])
        return out

    @property
    def has_prior(self) -> bool:
        return any(s.prior is not None for s in self.specs)

    def for_rl(self) -> HyperparameterSpace:
        """The space reinforcement-learning runs are scheduled with: each spec's
        ``rl_prior`` as its prior (this very space where no spec sets one apart)."""
        if all(s.rl_prior == SAME_PRIOR for s in self.specs):
            return self
        return HyperparameterSpace(s.for_rl() for s in self.specs)

    def apply_one(
        self, values: Mapping[str, Real], action: Sequence[float] | np.ndarray
    ) -> dict[str, np.float32]:
        """`apply` for one run on float32 scalars; ``action`` has one component per spec."""
        components = np.asarray(action, dtype=np.float32).reshape(-1)
        if components.size != len(self.specs):
            raise ValueError(
                f"expected an action with {len(self.specs)} components {list(self.names)}, "
                f"got shape {np.shape(action)}"
            )
        return {
            spec.name: spec.apply_one(values[spec.name], float(a))
            for spec, a in zip(self.specs, components)
            if spec.name in values
        }

    def scheduled_one(self, values: Mapping[str, Real], progress: float) -> dict[str, Real]:
        """`scheduled` for one run on float32 scalars."""
        out = dict(values)
        for spec in self.specs:
            if spec.prior is not None and spec.name in values:
                out[spec.name] = spec.scheduled_one(values[spec.name], progress)
        return out

    def scheduled(
        self, values: Mapping[str, Tensor], progress: Tensor | float
    ) -> dict[str, Tensor]:
        """The values runs receive for an interval centred on ``progress`` ([B] or a
        float): each spec's `HyperparameterSpec.scheduled`; names not in the space
        pass through unchanged."""
        out = dict(values)
        for spec in self.specs:
            if spec.prior is not None and spec.name in values:
                out[spec.name] = spec.scheduled(values[spec.name].float(), progress)
        return out
