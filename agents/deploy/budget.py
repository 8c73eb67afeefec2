"""A deployed run's decision budget: how many updates one decision covers.

The policy was meta-trained with a number of decisions per run (its bundle's
metadata); a deployed run of ``total_steps`` updates decides every
``total_steps // decisions_per_run`` updates unless the user says otherwise.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["DEFAULT_DECISIONS_PER_RUN", "decisions_per_run", "resolve_control_interval"]

DEFAULT_DECISIONS_PER_RUN = 50
"""Decisions per run when the policy's metadata does not say how many it was trained with."""


def decisions_per_run(policy: Any) -> int:
    """Decisions per training run the policy was meta-trained with (its bundle's
    metadata), or `DEFAULT_DECISIONS_PER_RUN` when the bundle does not say."""
    value: Any = getattr(policy, "decisions_per_run", None)
    metadata = getattr(policy, "metadata", {}) or {}
    if value is None:
        value = metadata.get("decisions_per_run")
    if value is None:
        value = (metadata.get("control") or {}).get("decisions_per_run")
    try:
        value = int(value)
    except (TypeError, ValueError):
        return DEFAULT_DECISIONS_PER_RUN
    return value if value >= 1 else DEFAULT_DECISIONS_PER_RUN


def resolve_control_interval(control_interval: Any, total_steps: int, policy: Any) -> int:
    """Updates per decision: ``control_interval``, or by default ``total_steps //
    decisions_per_run(policy)`` (at least 1).

    Raises:
        ValueError: Not a positive int.
    """
    if control_interval is None:
        decisions = decisions_per_run(policy)
        return max(1, total_steps // decisions)
    if (
        isinstance(control_interval, bool)
        or not isinstance(control_interval, (int, np.integer))
        or control_interval < 1
    ):
        raise ValueError(
            f"control_interval must be a positive int (updates per decision), got {control_interval!r}"
        )
    if control_interval > total_steps:
        warnings.warn(
            f"control_interval={control_interval} exceeds total_steps={total_steps}: "
            "the policy decides only once, before training",
            stacklevel=3,
        )
    return int(control_interval)
