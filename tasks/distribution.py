"""Task families by name, and seeded distributions over them with named splits.

Example:
    >>> import numpy as np
    >>> dist = default_distribution("train", control_weight=0.0)
    >>> task = dist.sample(np.random.default_rng(0))
    >>> task.family in dist.family_names
    True
    >>> task_by_name("digits_mlp").family
    'digits_mlp'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from hpo_env.errors import unknown_name_error
from hpo_env.protocol import Task
from tasks.family import SPLITS, TaskFamily, check_split
from tasks.supervised import supervised_families

REPRESENTATIVE_SEED = 0
"""Seed of the fixed task `task_by_name` returns for a family name."""

_REGISTRY: dict[str, TaskFamily] = {}
_BUILTINS_LOADED = False


def _check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise unknown_name_error("split", split, SPLITS)


def control_families() -> list[TaskFamily]:
    """The control (RL base-run) families from `tasks.control`."""
    from tasks.control import control_families as _control_families

    return list(_control_families())


def register_family(family: TaskFamily, *, replace: bool = False) -> None:
    """Add ``family`` to the registry under ``family.name``.

    Raises:
        ValueError: if the name is taken (and not ``replace``) or the splits are unknown.
        TypeError: if ``family`` does not implement `TaskFamily`.
    """
    if not isinstance(family, TaskFamily):
        raise TypeError(
            f"expected a TaskFamily (name, splits, sample_task), got {type(family).__name__}"
        )
    unknown = [s for s in family.splits if s not in SPLITS]
    if not family.splits or unknown:
        raise ValueError(
            f"family {family.name!r} must offer splits from {list(SPLITS)}, got {family.splits!r}"
        )
    if family.name in _REGISTRY and not replace and _REGISTRY[family.name] is not family:
        raise ValueError(f"a family named {family.name!r} is already registered; pass replace=True")
    _REGISTRY[family.name] = family


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from tasks.functional import functional_families

    for family in [*supervised_families(), *control_families(), *functional_families()]:
        if family.name not in _REGISTRY:
            register_family(family)


def list_families(split: str | None = None) -> list[str]:
    """Registered family names (those offering ``split`` if given), sorted."""
    _load_builtins()
    if split is not None:
        _check_split_name(split)
    return sorted(n for n, f in _REGISTRY.items() if split is None or split in f.splits)


def get_family(name: str) -> TaskFamily:
    """The registered family called ``name``.

    Raises:
        ValueError: naming the registered families and the closest match.
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise unknown_name_error("task family", name, _REGISTRY)
    return _REGISTRY[name]


def _representative_split(family: TaskFamily) -> str:
    return "train" if "train" in family.splits else family.splits[0]


def task_by_name(name: str) -> Task:
    """A fixed, seeded representative task of a family: ``"digits_mlp"`` (its ``train``
    variant, or its only split) or ``"digits_mlp:heldout"`` (that split's variant).

    Raises:
        ValueError: for an unknown family or split, suggesting the closest valid name.
    """
    family_name, _, split = name.partition(":")
    valid = list_tasks()
    if family_name not in list_families():
        raise unknown_name_error("task", name, valid)
    family = get_family(family_name)
    split = split or _representative_split(family)
    check_split(family.name, split, tuple(family.splits))
    return family.sample_task(np.random.default_rng(REPRESENTATIVE_SEED), split)


def list_tasks(split: str | None = None) -> list[str]:
    """Names `task_by_name` accepts: one per family (and split), for ``split`` if given."""
    names = []
    for family_name in list_families(split):
        family = get_family(family_name)
        if split is None:
            names.append(family_name)
            names += [
                f"{family_name}:{s}" for s in family.splits if s != _representative_split(family)
            ]
        else:
            names.append(
                family_name if split == _representative_split(family) else f"{family_name}:{split}"
            )
    return names


class TaskDistribution:
    """A weighted mixture of task families restricted to one split; a
    `hpo_env.protocol.TaskSampler`.

    Args:
        families_with_weights: ``{family or name: weight}`` or ``[(family or name, weight)]``;
            weights are finite, >= 0, with a positive sum (they are normalised).
        split: ``"train"`` or ``"heldout"``; every family must offer it.

    Example:
        >>> dist = TaskDistribution({"digits_mlp": 1.0, "sinusoid_mlp": 3.0}, split="train")
        >>> dist.probabilities
        {'digits_mlp': 0.25, 'sinusoid_mlp': 0.75}
    """

    def __init__(
        self,
        families_with_weights: Mapping[TaskFamily | str, float]
        | Sequence[tuple[TaskFamily | str, float]],
        split: str = "train",
    ) -> None:
        _check_split_name(split)
        items = (
            list(families_with_weights.items())
            if isinstance(families_with_weights, Mapping)
            else list(families_with_weights)
        )
        if not items:
            raise ValueError("TaskDistribution needs at least one (family, weight), got none")
        families: list[TaskFamily] = []
        weights: list[float] = []
        for entry in items:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise ValueError(f"expected (family, weight) pairs, got {entry!r}")
            family, weight = entry
            family = get_family(family) if isinstance(family, str) else family
            if not isinstance(family, TaskFamily):
                raise TypeError(f"expected a TaskFamily or its name, got {type(family).__name__}")
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"weight of family {family.name!r} must be a finite number >= 0, got {weight!r}"
                )
            check_split(family.name, split, tuple(family.splits))
            if family.name in (f.name for f in families):
                raise ValueError(f"family {family.name!r} appears twice in the distribution")
            families.append(family)
            weights.append(float(weight))
        total = sum(weights)
        if total <= 0:
            raise ValueError(f"the family weights must have a positive sum, got {weights}")
        self.split = split
        self.families: tuple[TaskFamily, ...] = tuple(families)
        self.weights = np.asarray(weights) / total

    @property
    def family_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.families)

    @property
    def probabilities(self) -> dict[str, float]:
        return {f.name: float(w) for f, w in zip(self.families, self.weights)}

    def task_by_name(self, name: str) -> Task:
        """A family's representative task of this distribution's split (see `task_by_name`);
        ``"family:split"`` names are accepted too. Used by ``hpo_env.distributions.resolve_task``."""
        family_name, _, split = name.partition(":")
        if family_name not in self.family_names:
            raise unknown_name_error(
                f"task of this {self.split!r} distribution", family_name, self.family_names
            )
        return task_by_name(f"{family_name}:{split or self.split}")

    def sample(self, rng: np.random.Generator) -> Task:
        """Draw a family by weight, then a task of this split from it (both from ``rng``)."""
        index = int(rng.choice(len(self.families), p=self.weights))
        return self.families[index].sample_task(rng, self.split)

    def __repr__(self) -> str:
        probs = ", ".join(f"{n}={p:.3g}" for n, p in self.probabilities.items())
        return f"TaskDistribution(split={self.split!r}, {probs})"


def default_distribution(
    split: str = "train",
    control_weight: float = 0.25,
    *,
    include: Sequence[str] | None = None,
) -> TaskDistribution:
    """The product's task distribution: the supervised families offering ``split`` share
    ``1 - control_weight`` equally; the control families share ``control_weight``.

    Args:
        split: ``"train"`` (meta-training) or ``"heldout"`` (evaluation on unseen tasks).
        control_weight: Probability mass of the control families, in [0, 1].
        include: Restrict to these family names (default: every registered family).

    Raises:
        ValueError: for an unknown split or family, or ``control_weight`` outside [0, 1].
    """
    _check_split_name(split)
    if not isinstance(control_weight, (int, float)) or not 0.0 <= control_weight <= 1.0:
        raise ValueError(f"control_weight must be in [0, 1], got {control_weight!r}")
    if include is not None:
        for name in include:
            get_family(name)  # raises with the closest valid name
    chosen = set(include) if include is not None else None
    supervised = [f for f in supervised_families() if split in f.splits]
    control = [f for f in control_families() if split in f.splits]
    if chosen is not None:
        supervised = [f for f in supervised if f.name in chosen]
        control = [f for f in control if f.name in chosen]
    if not supervised and not control:
        raise ValueError(f"no family offers split {split!r} among include={include!r}")
    weight_supervised = 1.0 - control_weight if control else 1.0
    weight_control = control_weight if supervised else 1.0
    if control_weight > 0 and not control:
        warnings.warn(
            f"control_weight={control_weight} but no control family offers split {split!r}; "
            "sampling supervised families only",
            stacklevel=2,
        )
    pairs: list[tuple[TaskFamily | str, float]] = [
        (get_family(f.name), weight_supervised / len(supervised)) for f in supervised
    ]
    pairs += [(get_family(f.name), weight_control / len(control)) for f in control]
    pairs = [(f, w) for f, w in pairs if w > 0]
    return TaskDistribution(pairs, split=split)
