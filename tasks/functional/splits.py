"""Distributions over the functional families by role, and the split table of every family.

Plugging the new families into meta-training (``agents/train`` reads a
``module:factory`` path through `hpo_env.distributions.resolve_sampler`)::

    TrainConfig(distribution="tasks.functional.splits:realistic_distribution", ...)

or ``hpo-rl train ... --distribution tasks.functional.splits:realistic_distribution``
where the CLI accepts it. The split table, as Markdown::

    python -m tasks.functional.splits

Example:
    >>> import numpy as np
    >>> dist = functional_distribution("validation")
    >>> dist.sample(np.random.default_rng(0)).family.endswith("_val")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hpo_env.errors import ConfigError, unknown_name_error
from tasks.distribution import TaskDistribution, default_distribution, get_family, list_families
from tasks.family import TaskFamily
from tasks.functional.families import (
    ROLE_NAMES,
    ROLES,
    FunctionalFamily,
    role_split,
    validation_families,
)

DEFAULT_FUNCTIONAL_WEIGHT = 0.6
"""Share of the new (functional) families in `realistic_distribution`."""
TABLE_DRAWS = 64
"""Tasks drawn per (family, split) to summarise a family the table has no description of."""


def functional_distribution(
    role: str = "train", weights: dict[str, float] | None = None
) -> TaskDistribution:
    """The functional families of ``role`` (``train``, ``validation`` or ``test``), equal
    weights unless ``weights`` (architecture name -> weight) says otherwise."""
    families, split = role_split(role)
    weights = weights or {}
    unknown = set(weights) - set(ROLES)
    if unknown:
        raise unknown_name_error("architecture family", sorted(unknown)[0], ROLES)
    pairs: list[tuple[TaskFamily | str, float]] = [
        (f if f.validation else get_family(f.name), float(weights.get(f.arch, 1.0)))
        for f in families
    ]
    return TaskDistribution(pairs, split=split)


def realistic_distribution(
    split: str = "train",
    control_weight: float = 0.25,
    functional_weight: float = DEFAULT_FUNCTIONAL_WEIGHT,
) -> TaskDistribution:
    """`tasks.distribution.default_distribution` mixed with the functional families.

    Args:
        split: ``"train"`` (meta-training), ``"validation"`` or ``"test"`` (the held-out
            families of the default distribution with the functional families of that
            role), or ``"heldout"`` (same as ``"test"``).
        control_weight: The default distribution's control share (of its own part).
        functional_weight: Share of draws from the functional families, in [0, 1].
    """
    if not 0.0 <= functional_weight <= 1.0:
        raise ConfigError(f"functional_weight must be in [0, 1], got {functional_weight!r}")
    role = "test" if split == "heldout" else split
    if role not in ROLE_NAMES:
        raise unknown_name_error("split", split, (*ROLE_NAMES, "heldout"))
    functional = functional_distribution(role)
    base = default_distribution("train" if role == "train" else "heldout", control_weight)
    pairs = [(f, (1.0 - functional_weight) * w) for f, w in zip(base.families, base.weights)]
    pairs += [(f, functional_weight * w) for f, w in zip(functional.families, functional.weights)]
    return TaskDistribution([(f, w) for f, w in pairs if w > 0], split=functional.split)


def _role(family: TaskFamily, split: str) -> str:
    if isinstance(family, FunctionalFamily):
        return family.role_of(split)
    return split


def _summary(family: TaskFamily, split: str) -> tuple[str, str, str, str]:
    """(data, model, optimizers, run length) of a family's split, from its tasks."""
    rng = np.random.default_rng(0)
    tasks = [family.sample_task(rng, split) for _ in range(TABLE_DRAWS)]
    lengths = [t.control_steps * t.updates_per_step for t in tasks]
    optimizers = sorted({str(getattr(t, "optimizer", "-")) for t in tasks})
    if isinstance(family, FunctionalFamily):
        spec = ROLES[family.arch]
        role = spec.role(family.role_of(split))
        data, model = ", ".join(role.sources), spec.model
    elif all(hasattr(t, "system") and hasattr(t, "learner") for t in tasks):  # control runs
        control: list[Any] = list(tasks)
        systems = sorted({str(t.system) for t in control})
        learners = sorted({type(t.learner).__name__ for t in control})
        data = ", ".join(f"{s} (simulated)" for s in systems)
        model = f"A2C actor-critic ({', '.join(learners)})"
    else:
        data_kinds = sorted({type(getattr(t, "data", t)).__name__ for t in tasks})
        data = ", ".join(d.removesuffix("Data") for d in data_kinds)
        nets = sorted({type(getattr(t, "net", t)).__name__.removesuffix("Spec") for t in tasks})
        acts = sorted(
            {str(getattr(getattr(t, "net", None), "activation", "")) for t in tasks} - {""}
        )
        model = ", ".join(nets) + (f" ({', '.join(acts)})" if acts else "")
    return data, model, ", ".join(optimizers), f"{min(lengths)}-{max(lengths)}"


def split_table(families: Sequence[str] | None = None) -> str:
    """A Markdown table of every registered family (or ``families``) and split:
    family, data, model, optimizers, run length in updates (``T * K``) and split.

    The split column is the role: ``train`` (meta-training), ``validation``
    (choosing), ``test`` (reporting) for the functional families; ``heldout`` for the
    older families, whose held-out variants serve both.
    """
    unregistered = {f.name: f for f in validation_families()}
    names = list(families) if families is not None else sorted([*list_families(), *unregistered])
    rows = ["| family | data | model | optimizers | run length (updates) | split |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name in names:
        family = unregistered[name] if name in unregistered else get_family(name)
        for split in family.splits:
            data, model, optimizers, length = _summary(family, split)
            rows.append(
                f"| {name} | {data} | {model} | {optimizers} | {length} | {_role(family, split)} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(split_table())
