"""Canonical hyperparameters inside ``torch.optim`` param groups, and moves within bounds.

The policy speaks canonical names (``learning_rate``, ``momentum``,
``weight_decay``); optimizers store them as ``lr``, ``momentum`` or Adam's
``betas[0]``, ``weight_decay``, sometimes as tensors (capturable / fused
optimizers). These helpers read and write them without changing their type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo_env.errors import ConfigTypeError
from hpo_env.space import HyperparameterSpace, HyperparameterSpec

SUPPORTED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
"""The optimizers the policy was meta-trained with (subclasses included)."""


def check_supported(optimizer: torch.optim.Optimizer) -> None:
    """Refuse an optimizer the policy was not meta-trained with, in one line.

    Raises:
        ConfigTypeError: e.g. ``torch.optim.LBFGS`` (its ``lr`` scales a line search).
    """
    if not isinstance(optimizer, SUPPORTED_OPTIMIZERS):
        names = ", ".join(f"torch.optim.{c.__name__}" for c in SUPPORTED_OPTIMIZERS)
        raise ConfigTypeError(
            f"TuningScheduler does not support {type(optimizer).__module__}."
            f"{type(optimizer).__name__}: the policy was meta-trained with {names} "
            "(or subclasses); pass one of those"
        )


def read_hparam(group: Mapping[str, Any], name: str) -> float | None:
    """A group's value of canonical hyperparameter ``name``; None where it has none."""
    if name == "learning_rate":
        value = group.get("lr")
    elif name == "momentum":
        if "momentum" in group:
            value = group["momentum"]
        elif "betas" in group:  # Adam-style: beta1 is the momentum
            value = group["betas"][0]
        else:
            return None
    elif name == "weight_decay":
        value = group.get("weight_decay")
    else:  # entropy_coef and friends belong to RL trainers, not optimizers
        return None
    if value is None:
        return None
    return float(value)


def write_hparam(group: dict[str, Any], name: str, value: float) -> None:
    """Set canonical ``name`` in one param group, keeping tensor values tensors."""
    if name == "learning_rate":
        key = "lr"
    elif name == "momentum" and "momentum" not in group:
        betas = group["betas"]
        if isinstance(betas[0], Tensor):
            betas[0].fill_(value)
        else:
            group["betas"] = (value, *tuple(betas)[1:])
        return
    else:
        key = name
    if isinstance(group[key], Tensor):  # tensor lr (capturable / fused optimizers)
        group[key].fill_(value)
    else:
        group[key] = value


def write_hyperparameters(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    """Set canonical hyperparameters (``learning_rate``, ``momentum``, ``weight_decay``)
    in every param group that has them; others are ignored.

    Raises:
        ValueError: a value is not finite.
    """
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        for group in optimizer.param_groups:
            if read_hparam(group, name) is not None:
                write_hparam(group, name, float(value))


def clip_to_spec(spec: HyperparameterSpec, value: float) -> float:
    """`HyperparameterSpec.clip` on a Python float (NaN goes to the lower bound)."""
    if math.isnan(value):
        return spec.low
    return min(max(value, spec.low), spec.high)


def spec_change(spec: HyperparameterSpec, new: float, start: float) -> float:
    """Factor (log specs) or offset (linear specs) taking ``start`` to ``new``."""
    if spec.log:
        return new / clip_to_spec(spec, start)
    return new - start


def spec_move(spec: HyperparameterSpec, base: float, change: float) -> float:
    """``base`` moved by a `spec_change` result, within the spec's bounds."""
    if spec.log:
        if base == 0.0:  # a group with e.g. weight_decay=0 keeps it off
            return 0.0
        return clip_to_spec(spec, base * change)
    return clip_to_spec(spec, base + change)


def start_values(
    space: HyperparameterSpace, groups: Sequence[Mapping[str, Any]]
) -> dict[str, list[float]]:
    """Every group's start value of each of ``space``'s hyperparameters that all
    groups hold (the ones a scheduler controls), in the space's order.

    Raises:
        ValueError: A value that is not finite, negative, or a learning rate of 0.
    """
    present = [n for n in space.names if all(read_hparam(g, n) is not None for g in groups)]
    base: dict[str, list[float]] = {
        name: [read_hparam(g, name) for g in groups]  # type: ignore[misc]
        for name in present
    }
    for name, values in base.items():
        bad = [v for v in values if not math.isfinite(v) or v < 0]
        if bad or (name == "learning_rate" and any(v <= 0 for v in values)):
            raise ValueError(
                f"optimizer {name} must be finite and {'> 0' if name == 'learning_rate' else '>= 0'} "
                f"in every param group, got {values}"
            )
    return base


def write_group_values(
    groups: Sequence[dict[str, Any]],
    space: HyperparameterSpace,
    base: Mapping[str, Sequence[float]],
    in_effect: Mapping[str, float],
) -> None:
    """Write group 0's values in effect; move every other group by the same factor
    (log specs) or offset (linear ones) from its own start value (``base``)."""
    for name, starts in base.items():
        spec = space[name]
        value0 = in_effect[name]
        change = spec_change(spec, value0, starts[0])
        for i, group in enumerate(groups):
            # Group 0 holds the environment's float32 value; the float64 clamp only
            # keeps its rounding (e.g. 0.99 -> 0.99000001) inside the bounds.
            value = clip_to_spec(spec, value0) if i == 0 else spec_move(spec, starts[i], change)
            if not math.isfinite(value):  # unreachable by construction; never write NaN
                continue
            write_hparam(group, name, value)
