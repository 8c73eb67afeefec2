"""Learning and using the tuning policy: meta-training, the policy bundle,
integrations, baselines, evaluation, tracking and the ``hpo-rl`` CLI.

Example:
    >>> from agents import TuningPolicy
    >>> policy = TuningPolicy.load("default")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.policy.tuning_policy import TuningPolicy

__all__ = ["TuningPolicy"]


def __getattr__(name: str) -> Any:
    # Lazy, so `hpo-rl --help` and submodules don't pay for torch/SB3 imports.
    if name == "TuningPolicy":
        from agents.policy.tuning_policy import TuningPolicy

        return TuningPolicy
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
