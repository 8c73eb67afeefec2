"""The recipe's training distribution (issue 26, lever 3): today's families and the
``tasks.functional`` train-role families, more SGD-momentum runs whose right rate is
high, and a share of tasks whose runs start near the usual rate.

- ``sgd_share`` of the draws are functional train-role tasks with SGD-momentum (the
  character transformer, LSTM, 1-D CNN and image CNN, whose usual rates are 0.05-0.5):
  the runs where the shipped policy cut a high right rate;
- ``near_start_share`` of the tasks start every run within ``near_factor`` of the
  optimizer's usual rate (``default_learning_rate``) instead of the family's wide
  spread (x0.01 to x100), so that holding a good rate is learned too;
- the rest is `tasks.functional.splits.realistic_distribution` as is.

Evaluation splits are left alone: ``heldout`` (the trainer's periodic evaluation)
draws the *validation* role of the functional families (never ``test``), with the
default distribution's held-out families.

Use it with ``TrainConfig(distribution="tasks.recipe_distribution:recipe_distribution")``
(the ``recipe`` preset does). `fast_recipe_distribution` is the near-start tilt alone on
the hand-batched default families: the functional families run 4-13 decisions/s against
35-75, too slow for a 30-minute meta-training on 2 cores.

Example:
    >>> import numpy as np
    >>> dist = recipe_distribution("train", control_weight=0.0)
    >>> task = dist.sample(np.random.default_rng(0))
    >>> task.family in dist.family_names
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hpo_env.errors import ConfigError
from hpo_env.protocol import Task, is_rl_task
from tasks.distribution import TaskDistribution, control_families, default_distribution
from tasks.functional.families import ROLES, functional_families
from tasks.functional.splits import (
    DEFAULT_FUNCTIONAL_WEIGHT,
    functional_distribution,
    realistic_distribution,
)

SGD_DRAWS = 64
"""Tries to draw an SGD task from the SGD-offering families (each offers it half the time)."""


def near_start(task: Task, factor: float) -> Task:
    """``task`` with every run's start rate drawn within ``factor`` of its usual rate
    (log-uniform); a task with no start-rate spread (control) is returned as is."""
    half = math.log10(factor)
    if hasattr(task, "lr_log10_range"):
        return dataclasses.replace(task, lr_log10_range=(-half, half))  # type: ignore[type-var]
    if hasattr(task, "lr_log10_spread"):
        return dataclasses.replace(task, lr_log10_spread=half)  # type: ignore[type-var]
    return task


class RecipeDistribution:
    """A `hpo_env.protocol.TaskSampler` over ``base`` with the recipe's two tilts.

    Args:
        base: The distribution drawn from most of the time.
        sgd: The functional train-role families that offer SGD (drawn ``sgd_share``
            of the time, until the task's optimizer is SGD).
        sgd_share: Share of draws that are SGD-momentum functional tasks, in [0, 1].
        near_start_share: Share of tasks whose runs start near the usual rate, in [0, 1].
        near_factor: How near: within this factor (> 1) of the usual rate.
        entropy_off_share: Share of control tasks trained with no entropy bonus and
            no ``entropy_coef`` to control (SB3 PPO/A2C at their default ``ent_coef=0``).
        control_start_lr: Where control (RL) tasks' start rates are centred (their
            ``10**U(-1.5, 1.5)`` spread kept) instead of the family's 3e-3; None keeps it.
            The held-out control tasks' best constant rates are 5.6e-4 and 9.5e-4, so
            around 3e-3 most starts are too hot and cutting is learned as a rule.
    """

    def __init__(
        self,
        base: TaskDistribution,
        sgd: TaskDistribution | None,
        sgd_share: float,
        near_start_share: float,
        near_factor: float = 2.0,
        entropy_off_share: float = 0.0,
        control_start_lr: float | None = None,
    ) -> None:
        if control_start_lr is not None and not (
            isinstance(control_start_lr, (int, float)) and 0.0 < control_start_lr < 10.0
        ):
            raise ConfigError(
                f"control_start_lr must be a learning rate in (0, 10) or None, got {control_start_lr!r}"
            )
        shares = (
            ("sgd_share", sgd_share),
            ("near_start_share", near_start_share),
            ("entropy_off_share", entropy_off_share),
        )
        for name, value in shares:
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if not (isinstance(near_factor, (int, float)) and near_factor > 1.0):
            raise ConfigError(f"near_factor must be a number > 1, got {near_factor!r}")
        if sgd_share > 0 and sgd is None:
            raise ConfigError("sgd_share > 0 needs SGD families, got none")
        self.base, self.sgd = base, sgd
        self.sgd_share = float(sgd_share)
        self.near_start_share = float(near_start_share)
        self.near_factor = float(near_factor)
        self.entropy_off_share = float(entropy_off_share)
        self.control_start_lr = control_start_lr
        self.split = base.split

    @property
    def family_names(self) -> tuple[str, ...]:
        return self.base.family_names

    @property
    def probabilities(self) -> dict[str, float]:
        return self.base.probabilities

    def task_by_name(self, name: str) -> Task:
        return self.base.task_by_name(name)

    def sample(self, rng: np.random.Generator) -> Task:
        task: Any = None
        if self.sgd is not None and rng.random() < self.sgd_share:
            for _ in range(SGD_DRAWS):
                task = self.sgd.sample(rng)
                if getattr(task, "optimizer", None) == "sgd":
                    break
        if task is None or getattr(task, "optimizer", None) != "sgd":
            task = self.base.sample(rng)
        if rng.random() < self.near_start_share:
            task = near_start(task, self.near_factor)
        # Drawn only when used, so a share of 0 leaves every other draw as it was.
        if (
            self.entropy_off_share > 0
            and getattr(task, "entropy_controlled", False)
            and rng.random() < self.entropy_off_share
        ):
            task = dataclasses.replace(task, entropy_controlled=False)
        if self.control_start_lr is not None and is_rl_task(task):
            task = dataclasses.replace(task, default_learning_rate=self.control_start_lr)
        return task

    def __repr__(self) -> str:
        return (
            f"RecipeDistribution(sgd_share={self.sgd_share}, "
            f"near_start_share={self.near_start_share:.3g}, near_factor={self.near_factor}, "
            f"entropy_off_share={self.entropy_off_share:.3g}, "
            f"control_start_lr={self.control_start_lr}, "
            f"base={self.base!r})"
        )


def sgd_families() -> TaskDistribution:
    """The functional families whose train role offers SGD-momentum, equal weights."""
    families = [f for f in functional_families() if "sgd" in ROLES[f.arch].train.optimizers]
    return TaskDistribution([(f, 1.0) for f in families], split="train")


def recipe_distribution(
    split: str = "train",
    control_weight: float = 0.25,
    functional_weight: float = DEFAULT_FUNCTIONAL_WEIGHT,
    sgd_share: float = 0.25,
    near_start_share: float = 1.0 / 3.0,
    near_factor: float = 2.0,
) -> RecipeDistribution | TaskDistribution:
    """The recipe's distribution for ``split`` (see the module docstring).

    ``train``: `RecipeDistribution` over `realistic_distribution`; ``heldout``: the
    validation role (`realistic_distribution("validation")`); ``validation`` and
    ``test``: those roles, unchanged.
    """
    if split != "train":
        role = "validation" if split == "heldout" else split
        return realistic_distribution(role, control_weight, functional_weight)
    base = realistic_distribution("train", control_weight, functional_weight)
    sgd = sgd_families() if sgd_share > 0 else None
    return RecipeDistribution(base, sgd, sgd_share, near_start_share, near_factor)


def fast_recipe_distribution(
    split: str = "train",
    control_weight: float = 0.25,
    near_start_share: float = 1.0 / 3.0,
    near_factor: float = 2.0,
    entropy_off_share: float = 0.0,
    control_start_lr: float | None = None,
) -> RecipeDistribution | TaskDistribution:
    """`tasks.distribution.default_distribution` with ``near_start_share`` of its train
    tasks started within ``near_factor`` of the usual rate and ``entropy_off_share`` of
    its control tasks without an entropy bonus, control starts centred on
    ``control_start_lr`` (no functional families, so draws cost what the default
    preset's do); other splits are the default's."""
    base = default_distribution(split, control_weight)
    if split != "train":
        return base
    return RecipeDistribution(
        base, None, 0.0, near_start_share, near_factor, entropy_off_share, control_start_lr
    )


CHEAP_FUNCTIONAL_ARCHS = ("table_resmlp", "image_cnn2d")
"""The ``tasks.functional`` architectures whose decisions cost about what a control
task's do (20-36 decisions/s for a group of 4 paired runs on one AMD EPYC core, against
16-18 for control and 100-170 for the hand-batched MLPs). The character models run
1.4-12, so a share of them large enough to be learned from would make meta-training
several times slower; they stay in `recipe_distribution`."""


def functional_recipe_distribution(
    split: str = "train",
    control_weight: float = 0.25,
    functional_weight: float = 0.2,
    functional_archs: tuple[str, ...] = CHEAP_FUNCTIONAL_ARCHS,
    near_start_share: float = 1.0 / 3.0,
    near_factor: float = 2.0,
    entropy_off_share: float = 0.0,
    control_start_lr: float | None = None,
) -> RecipeDistribution | TaskDistribution:
    """`fast_recipe_distribution` with ``functional_weight`` of its train draws from the
    ``tasks.functional`` train-role families ``functional_archs`` (residual MLPs with
    LayerNorm on teacher tables with AdamW/RMSprop, GroupNorm CNNs on 8x8 digits with
    SGD-momentum/Adam: the SGD CNN is a run the policy of 2026-11-30 cut 2x too low).
    Other splits are the default's, so its evaluation matches the other recipes'."""
    if not 0.0 <= functional_weight <= 1.0:
        raise ConfigError(f"functional_weight must be in [0, 1], got {functional_weight!r}")
    base = default_distribution(split, control_weight)
    if split != "train":
        return base
    if not functional_archs or not set(functional_archs) <= set(ROLES):
        raise ConfigError(
            f"functional_archs must name some of {sorted(ROLES)}, got {functional_archs!r}"
        )
    # Architectures functional_distribution is not given a weight for weigh 1 there.
    functional = functional_distribution(
        "train", {arch: float(arch in functional_archs) for arch in ROLES}
    )
    # The functional share comes out of the supervised families', so the control share
    # (and with it the RL part of the recipe) stays what `fast_recipe_distribution` has.
    control = {family.name for family in control_families()}
    probabilities = base.probabilities
    supervised = 1.0 - sum(p for name, p in probabilities.items() if name in control)
    if functional_weight > supervised:
        raise ConfigError(
            f"functional_weight {functional_weight} is more than the supervised share "
            f"{supervised:.3g} it comes out of; lower it or control_weight"
        )
    keep = (supervised - functional_weight) / supervised if supervised > 0 else 0.0
    pairs = [
        (f, probabilities[f.name] * (1.0 if f.name in control else keep)) for f in base.families
    ]
    pairs += [(f, functional_weight * w) for f, w in zip(functional.families, functional.weights)]
    mixed = TaskDistribution([(f, w) for f, w in pairs if w > 0], split="train")
    return RecipeDistribution(
        mixed, None, 0.0, near_start_share, near_factor, entropy_off_share, control_start_lr
    )
