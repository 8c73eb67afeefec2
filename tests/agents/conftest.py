"""Fixtures for the agents tests: one local Ray per test session (Ray start-up
takes seconds, so every Ray test shares it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """A local 2-CPU Ray, started once and shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 2**20,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    if started_here:
        ray.shutdown()
