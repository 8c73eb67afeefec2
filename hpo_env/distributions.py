"""Resolve task samplers by name through the ``hpo_env.distributions`` entry-point
group, so `hpo_env` can offer registered environments without importing tasks."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from hpo_env.errors import unknown_name_error
from hpo_env.protocol import TaskSampler

ENTRY_POINT_GROUP = "hpo_env.distributions"


def resolve_sampler(
    distribution: str | TaskSampler, split: str = "train", **kwargs: Any
) -> TaskSampler:
    """A `TaskSampler` from a registered distribution name, a ``module:factory`` path, or the sampler itself."""
    if not isinstance(distribution, str):
        if not isinstance(distribution, TaskSampler):
            raise TypeError(
                f"distribution must be a registered name or have .sample(rng), got {type(distribution).__name__}"
            )
        return distribution
    if ":" in distribution:
        return _import_factory(distribution)(split=split, **kwargs)
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if distribution not in found:
        raise unknown_name_error(
            f"task distribution (registered under the {ENTRY_POINT_GROUP!r} entry-point group)",
            distribution,
            found,
        )
    factory = found[distribution].load()
    return factory(split=split, **kwargs)


def _import_factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"distribution {spec!r} cannot be imported ({exc}); expected a registered name "
            "like 'default' or 'package.module:factory'"
        ) from None


def resolve_task(sampler: TaskSampler, task: Any) -> Any:
    """A task object from a task or a task name the sampler knows."""
    if not isinstance(task, str):
        return task
    lookup = getattr(sampler, "task_by_name", None)
    if lookup is None:
        raise ValueError(
            f"this task sampler cannot look tasks up by name ({task!r}); pass a Task object"
        )
    return lookup(task)
