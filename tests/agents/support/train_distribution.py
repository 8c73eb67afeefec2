"""Shared helpers for the training tests (no tests here): a tiny task
distribution usable as ``TrainConfig.distribution`` in subprocesses."""

from __future__ import annotations

from typing import Any

from tests.hpo_env.tiny_task import TinySampler

TINY_DISTRIBUTION = "tests.agents.support.train_distribution:tiny_distribution"


def tiny_distribution(split: str = "train", **kwargs: Any) -> TinySampler:
    """TinySampler for any split; distribution kwargs (control_weight) are ignored."""
    return TinySampler()
