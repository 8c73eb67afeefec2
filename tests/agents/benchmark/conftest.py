"""Tiny seeded transfer tasks (tens of updates) shared by the transfer tests."""

from __future__ import annotations

import pytest

from agents.benchmark.transfer.suite import TaskSpec


@pytest.fixture
def tiny_task() -> TaskSpec:
    """Iris, a residual MLP and Adam for 12 updates, validated every 4."""
    return TaskSpec(
        "tiny_iris", "validation", "iris", "resmlp", "adam",
        batch_size=16, n_updates=12, start_lr=1e-2, start_regime="typical", val_every=4, width=16,
    )  # fmt: skip


@pytest.fixture
def tiny_sgd_task() -> TaskSpec:
    """Wine, a plain MLP and SGD with momentum for 12 updates (the schedule-free SGD path)."""
    return TaskSpec(
        "tiny_wine", "validation", "wine", "mlp", "sgd_momentum",
        batch_size=16, n_updates=12, start_lr=0.05, start_regime="typical", val_every=4, width=16,
    )  # fmt: skip
