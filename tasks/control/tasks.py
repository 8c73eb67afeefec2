"""Control tasks and their families: an A2C policy learning a classic-control system.

A `ControlTask` is one physics *regime*: a system plus a box of physics
constants. Each run of the task draws its own context from that box (from
its seed), so B runs of one task see slightly different physics, as CARL's
context distributions do. A `ControlFamily` draws tasks for a split:

- ``control_cartpole``: ``train`` draws a nominal context with every constant
  (gravity, cart mass, pole mass, pole half-length, push force) in
  0.5x-2x Gymnasium's value; ``heldout`` puts gravity at 2.5x-3.5x or the pole
  half-length at 0.3x-0.45x, outside anything seen in training.
- ``control_acrobot``: ``heldout`` only, a system never seen in training, with
  link lengths, masses, centres of mass, inertia and gravity at 0.75x-1.33x.

Example:
    >>> import numpy as np
    >>> family = control_families()[0]
    >>> task = family.sample_task(np.random.default_rng(0), "train")
    >>> task.family, task.control_steps, task.updates_per_step
    ('control_cartpole', 40, 8)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from hpo_env.device import resolve_device
from hpo_env.space import ENTROPY_COEF, LEARNING_RATE
from tasks.control.learner import ActorCriticConfig, ControlRun
from tasks.control.physics import get_system


@dataclasses.dataclass(frozen=True)
class ContextRange:
    """Where one physics constant of a run is drawn (log-uniformly) from."""

    name: str
    """Context name, e.g. ``gravity`` (see the system's ``context_defaults``)."""
    low: float
    """Smallest value (> 0)."""
    high: float
    """Largest value (>= low; equal pins the constant)."""

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise ValueError(
                f"ContextRange {self.name!r}: expected 0 < low <= high < inf, got {self.low=}, {self.high=}"
            )

    def draw(self, rng: np.random.Generator) -> float:
        return float(self.low * (self.high / self.low) ** rng.random())


@dataclasses.dataclass(frozen=True)
class ControlTask:
    """One control problem: a system, a box of physics contexts and the learner's settings.

    Implements `hpo_env.protocol.Task`; picklable and hashable.
    """

    system: str = "cartpole"
    """A name in `tasks.control.physics.SYSTEMS`."""
    context: tuple[ContextRange, ...] = ()
    """Ranges of the constants that vary; the others keep Gymnasium's values."""
    label: str = "default"
    """Short description of the regime, part of `name`."""
    family: str = "control"
    """The family that drew this task."""
    learner: ActorCriticConfig = dataclasses.field(default_factory=ActorCriticConfig)
    """The inner A2C learner's fixed settings."""
    control_steps: int = 40
    """T, control decisions per episode."""
    updates_per_step: int = 8
    """K, inner A2C updates per decision."""
    default_learning_rate: float = 3e-3
    """A sensible constant learning rate (Adam) for this learner."""
    default_entropy_coef: float = 0.01
    """A sensible entropy bonus."""
    learning_rate_log10_spread: float = 1.5
    """Initial learning rates are ``default * 10**U(-spread, spread)`` per run."""
    entropy_coef_log10_spread: float = 0.5
    """Initial entropy coefficients are ``default * 10**U(-spread, spread)`` per run."""
    entropy_controlled: bool = True
    """False: the runs train with no entropy bonus and do not offer ``entropy_coef`` to
    the controller, as a deployed SB3 PPO/A2C at its default ``ent_coef=0`` (the
    observation's ``entropy_coef.present`` reads 0 there)."""

    def __post_init__(self) -> None:
        system = get_system(self.system)
        for item in self.context:
            if item.name not in system.context_defaults:
                raise ValueError(
                    f"{self.system}: unknown context {item.name!r}, expected one of {sorted(system.context_defaults)}"
                )
        if self.control_steps < 1 or self.updates_per_step < 1:
            raise ValueError(
                f"expected control_steps >= 1 and updates_per_step >= 1, got {self.control_steps=}, {self.updates_per_step=}"
            )
        if not (self.default_learning_rate > 0 and self.default_entropy_coef > 0):
            raise ValueError(
                f"default hyperparameters must be > 0, got {self.default_learning_rate=}, {self.default_entropy_coef=}"
            )

    @property
    def is_rl(self) -> bool:
        """RL runs: the engine schedules them with the space's RL prior (`hpo_env.protocol.is_rl_task`)."""
        return True

    @property
    def name(self) -> str:
        suffix = "" if self.entropy_controlled else "+no-entropy"
        return f"{self.system}/{self.label}{suffix}"

    def build(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> ControlRun:
        """B = ``len(seeds)`` A2C runs on ``device`` (a name `hpo_env.device` accepts)."""
        return ControlRun(self, seeds, resolve_device(device))

    def default_hparams(self) -> dict[str, float]:
        return {
            "learning_rate": self.default_learning_rate,
            "entropy_coef": self.default_entropy_coef,
        }

    def draw_context(self, rng: np.random.Generator) -> dict[str, float]:
        """One run's physics constants (only those this task varies)."""
        return {item.name: item.draw(rng) for item in self.context}

    def initial_hparams(self, rng: np.random.Generator) -> dict[str, float]:
        """One run's initial hyperparameters, clipped to the controlled bounds."""
        lr = self.default_learning_rate * 10 ** rng.uniform(
            -self.learning_rate_log10_spread, self.learning_rate_log10_spread
        )
        ent = self.default_entropy_coef * 10 ** rng.uniform(
            -self.entropy_coef_log10_spread, self.entropy_coef_log10_spread
        )
        if not self.entropy_controlled:
            ent = 0.0  # drawn all the same, so the learning rate's draw is the controlled one's
            return {"learning_rate": min(max(lr, LEARNING_RATE.low), LEARNING_RATE.high),
                    "entropy_coef": ent}  # fmt: skip
        return {
            "learning_rate": min(max(lr, LEARNING_RATE.low), LEARNING_RATE.high),
            "entropy_coef": min(max(ent, ENTROPY_COEF.low), ENTROPY_COEF.high),
        }


CARTPOLE_DEFAULT = ControlTask(system="cartpole")
"""CartPole-v1 with Gymnasium's physics for every run."""
ACROBOT_DEFAULT = ControlTask(system="acrobot", default_learning_rate=1e-2)
"""Acrobot-v1 with Gymnasium's physics for every run. Its sparse start (-1 per step
until the first success) needs a hotter default: at 3e-3 the greedy policy first
reaches the goal within the evaluation horizon after ~7 control steps, at 1e-2
after ~3."""


@dataclasses.dataclass(frozen=True)
class Region:
    """Where a split's nominal contexts lie: per constant, a factor range on the default."""

    factors: tuple[tuple[str, float, float], ...]
    """(name, low factor, high factor) for every constant that varies."""
    extreme: tuple[tuple[str, float, float], ...] = ()
    """If set, one of these (name, low, high) is drawn and overrides ``factors``."""


@dataclasses.dataclass(frozen=True)
class ControlFamily:
    """Draws `ControlTask` regimes of one system, per split (a `TaskFamily`)."""

    name: str
    """Family name, e.g. ``control_cartpole``."""
    system: str
    """The system every task of the family runs."""
    regions: tuple[tuple[str, Region], ...]
    """(split name, where its nominal contexts lie)."""
    run_spread: float = 1.1
    """Runs of one task draw each constant within [nominal / spread, nominal * spread]."""
    task_kwargs: tuple[tuple[str, object], ...] = ()
    """Other `ControlTask` fields, e.g. (("updates_per_step", 4),)."""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.regions)

    def sample_task(self, rng: np.random.Generator, split: str) -> ControlTask:
        regions = dict(self.regions)
        if split not in regions:
            raise ValueError(f"family {self.name!r} has splits {list(self.splits)}, got {split!r}")
        region = regions[split]
        defaults = get_system(self.system).context_defaults
        factors = {name: (lo, hi) for name, lo, hi in region.factors}
        if region.extreme:
            name, lo, hi = region.extreme[int(rng.integers(len(region.extreme)))]
            factors[name] = (lo, hi)
        context, label = [], []
        for name, (lo, hi) in factors.items():
            factor = lo * (hi / lo) ** rng.random()
            nominal = defaults[name] * factor
            context.append(ContextRange(name, nominal / self.run_spread, nominal * self.run_spread))
            label.append(f"{name}={factor:.2f}x")
        return ControlTask(
            system=self.system,
            context=tuple(context),
            label=f"{split}[{','.join(label)}]",
            family=self.name,
            **dict(self.task_kwargs),  # type: ignore[arg-type]
        )


_CARTPOLE_TRAIN = Region(
    factors=tuple(
        (name, 0.5, 2.0) for name in ("gravity", "masscart", "masspole", "length", "force_mag")
    )
)
_CARTPOLE_HELDOUT = dataclasses.replace(
    _CARTPOLE_TRAIN, extreme=(("gravity", 2.5, 3.5), ("length", 0.3, 0.45))
)
_ACROBOT_HELDOUT = Region(
    factors=tuple(
        (name, 0.75, 1.33)
        for name in (
            "link_length_1",
            "link_mass_1",
            "link_mass_2",
            "link_com_pos_1",
            "link_com_pos_2",
            "link_moi",
            "gravity",
        )
    )
)


def control_families() -> list[ControlFamily]:
    """The control task families: CartPole (train + held-out physics), Acrobot (held out)."""
    return [
        ControlFamily(
            "control_cartpole",
            "cartpole",
            (("train", _CARTPOLE_TRAIN), ("heldout", _CARTPOLE_HELDOUT)),
        ),
        ControlFamily(
            "control_acrobot",
            "acrobot",
            (("heldout", _ACROBOT_HELDOUT),),
            task_kwargs=(("default_learning_rate", ACROBOT_DEFAULT.default_learning_rate),),
        ),
    ]
