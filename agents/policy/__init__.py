"""The policy as a product: the safe bundle format and `TuningPolicy` (plus the shipped bundles)."""

from agents.policy.tuning_policy import TuningPolicy

__all__ = ["TuningPolicy"]
