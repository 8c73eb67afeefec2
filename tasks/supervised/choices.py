"""Structural choices shared by the supervised families, and how splits partition them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from tasks.supervised.base import (
    DEFAULT_MOMENTUMS,
    DEFAULT_WEIGHT_DECAY,
    HELDOUT_ACTIVATIONS,
    HELDOUT_OPTIMIZERS,
    TRAIN_ACTIVATIONS,
    TRAIN_OPTIMIZERS,
    pick,
)


def check_int_range(owner: str, name: str, value: tuple[int, int], minimum: int = 1) -> None:
    """Raise `ValueError` unless ``value`` is ``(lo, hi)`` with ``minimum <= lo <= hi``."""
    if len(value) != 2 or not minimum <= value[0] <= value[1]:
        raise ValueError(
            f"{owner}.{name} must be (low, high) with {minimum} <= low <= high, got {value!r}"
        )


def check_float_range(owner: str, name: str, value: tuple[float, float], minimum: float) -> None:
    """Raise `ValueError` unless ``value`` is ``(lo, hi)`` with ``minimum <= lo <= hi``, finite."""
    if len(value) != 2 or not all(map(math.isfinite, value)) or not minimum <= value[0] <= value[1]:
        raise ValueError(
            f"{owner}.{name} must be finite (low, high) with {minimum} <= low <= high, got {value!r}"
        )


def check_options(owner: str, name: str, value: tuple[int, ...], minimum: int = 1) -> None:
    """Raise `ValueError` unless ``value`` is a non-empty tuple of ints >= ``minimum``."""
    if not value or any(v < minimum for v in value):
        raise ValueError(f"{owner}.{name} must be non-empty, all >= {minimum}, got {value!r}")


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high], log-uniformly (small data sizes as likely as large)."""
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclasses.dataclass(frozen=True)
class TrainingChoices:
    """The options a family draws its network, optimizer, batch size and budget from.

    The ``train`` split uses `TRAIN_ACTIVATIONS` x `TRAIN_OPTIMIZERS`; the ``heldout``
    split uses `HELDOUT_ACTIVATIONS` (never seen in meta-training) with any optimizer,
    AdamW included.
    """

    widths: tuple[int, ...] = (16, 32, 64)
    """Hidden-layer widths (one drawn per task; all hidden layers share it)."""
    depths: tuple[int, ...] = (1, 2, 3)
    """Numbers of hidden layers."""
    batch_sizes: tuple[int, ...] = (16, 32, 64)
    """Minibatch sizes (capped at the task's training-set size)."""
    control_steps: tuple[int, ...] = (30, 50, 70)
    """Episode lengths T (deploy-like: a deployed run makes ~50 decisions)."""
    updates_per_step: tuple[int, ...] = (8, 12, 16)
    """Inner updates per decision K."""
    default_learning_rates: tuple[tuple[str, float], ...] = (
        ("sgd", 0.05),
        ("adam", 5e-3),
        ("adamw", 5e-3),
        ("rmsprop", 1e-3),
    )
    """Sensible constant learning rate per optimizer."""
    max_step_macs: int = 2_000_000
    """Budget of one run's control step (K x batch x forward multiply-accumulates): bigger
    draws are redrawn, so a step at B=64 stays in the tens of milliseconds on 2 cores."""

    def __post_init__(self) -> None:
        for name in ("widths", "batch_sizes", "control_steps", "updates_per_step"):
            check_options(type(self).__name__, name, getattr(self, name))
        check_options(type(self).__name__, "depths", self.depths, minimum=0)
        lrs = dict(self.default_learning_rates)
        missing = sorted(set(HELDOUT_OPTIMIZERS) - set(lrs))
        if missing or any(not v > 0 for v in lrs.values()):
            raise ValueError(
                f"default_learning_rates needs a positive rate for each of "
                f"{list(HELDOUT_OPTIMIZERS)}, got {self.default_learning_rates!r}"
            )

    def sample(
        self,
        rng: np.random.Generator,
        split: str,
        n_train: int,
        macs_per_example: Callable[[tuple[int, ...]], int] | None = None,
    ) -> dict[str, object]:
        """Keyword arguments for `SupervisedTask` (besides family, data and net) plus
        ``hidden`` and ``activation`` for the network.

        Args:
            rng: Source of every choice.
            split: ``"train"`` or ``"heldout"`` (picks the activation / optimizer pools).
            n_train: Training-set size (caps the batch size).
            macs_per_example: Multiply-accumulates of one forward pass given the hidden
                widths; draws whose control step would exceed `max_step_macs` are redrawn.
        """
        activations = TRAIN_ACTIVATIONS if split == "train" else HELDOUT_ACTIVATIONS
        optimizers = TRAIN_OPTIMIZERS if split == "train" else HELDOUT_OPTIMIZERS
        optimizer = str(pick(rng, optimizers))
        activation = str(pick(rng, activations))
        while True:
            width = int(pick(rng, self.widths))  # type: ignore[call-overload]
            depth = int(pick(rng, self.depths))  # type: ignore[call-overload]
            hidden = (width,) * depth
            batch_size = min(int(pick(rng, self.batch_sizes)), n_train)  # type: ignore[call-overload]
            updates = int(pick(rng, self.updates_per_step))  # type: ignore[call-overload]
            cost = 0 if macs_per_example is None else macs_per_example(hidden)
            if cost * batch_size * updates <= self.max_step_macs or cost == 0:
                break
            if (
                width == min(self.widths)
                and depth == min(self.depths)
                and batch_size == min(min(self.batch_sizes), n_train)
                and updates == min(self.updates_per_step)
            ):
                break  # the cheapest draw: accept it whatever the budget
        return {
            "hidden": hidden,
            "activation": activation,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "control_steps": int(pick(rng, self.control_steps)),  # type: ignore[call-overload]
            "updates_per_step": updates,
            "default_learning_rate": float(dict(self.default_learning_rates)[optimizer]),
            "default_weight_decay": DEFAULT_WEIGHT_DECAY[optimizer],
            "default_momentum": DEFAULT_MOMENTUMS[optimizer],
        }
