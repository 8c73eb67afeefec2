"""The `TaskFamily` protocol: a named, seeded generator of tasks with named splits.

Every family (supervised ones in `tasks.supervised`, the control family in
`tasks.control`) implements it; `tasks.distribution` mixes families into a
`TaskDistribution`, and the conformance suite (``tests/tasks/test_conformance.py``)
runs against every registered family.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hpo_env.errors import ConfigError, did_you_mean
from hpo_env.protocol import Task

SPLITS = ("train", "heldout")
"""Named splits: ``train`` tasks are used for meta-training; ``heldout`` tasks (whole
families or variants) are never drawn by a ``train`` distribution."""


@runtime_checkable
class TaskFamily(Protocol):
    """A family of tasks, e.g. MLPs on the digits data set."""

    @property
    def name(self) -> str:
        """Registry key, e.g. ``"digits_mlp"``."""
        ...

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this family offers, a subset of `SPLITS`."""
        ...

    def sample_task(self, rng: np.random.Generator, split: str) -> Task:
        """A task of this family from ``split``, its structure drawn from ``rng``.

        Raises:
            ValueError: if the family does not offer ``split``.
        """
        ...


def check_split(family: str, split: str, offered: tuple[str, ...]) -> None:
    """Raise a `ValueError` naming the offered splits (and the closest) if ``split`` isn't one."""
    if split in offered:
        return
    raise ConfigError(
        f"family {family!r} offers splits {list(offered)}, got split={split!r}"
        f"{did_you_mean(split, offered)}"
    )
