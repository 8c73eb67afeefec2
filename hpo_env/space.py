"""Controlled hyperparameters: names, bounds, log scale, and the action mapping.

An action is a vector in [-1, 1]^k. Component i multiplies hyperparameter i by
``10 ** (a_i * max_log10_step)`` (log-scale specs) or adds ``a_i * max_step``
(linear ones), then clips to the bounds: a bounded, multiplicative change
that allows a fast back-off from a run that is too hot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from hpo_env.errors import unknown_name_error


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

    def clip(self, value: Tensor) -> Tensor:
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
        return dataclasses.asdict(self)


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
    def from_names(cls, names: Iterable[str]) -> HyperparameterSpace:
        """Build from canonical names with their default bounds."""
        specs = []
        for name in names:
            if name not in KNOWN_SPECS:
                raise unknown_name_error("hyperparameter", name, KNOWN_SPECS)
            specs.append(KNOWN_SPECS[name])
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
