"""Ray stays quiet: abandoned task results are read (no "Unhandled error" traceback
when their refs are collected), and the CLI keeps Ray's own logging to errors."""

from __future__ import annotations

import gc
import time

import pytest

from agents.common.ray_backend import settle


class _FakeRay:
    def __init__(self):
        self.cancelled: list[int] = []
        self.read: list[int] = []

    def cancel(self, ref):
        self.cancelled.append(ref)

    def get(self, ref, timeout=None):
        self.read.append(ref)
        raise RuntimeError(f"task {ref} failed")


def test_settle_reads_every_outcome_and_swallows_errors():
    ray = _FakeRay()
    settle(ray, [1, 2, 3], cancel=True)
    assert ray.cancelled == [1, 2, 3] and ray.read == [1, 2, 3]
    ray = _FakeRay()
    settle(ray, [4])
    assert ray.cancelled == [] and ray.read == [4]


def _fail(x: int) -> int:
    time.sleep(0.2 * x)
    raise ValueError(f"bad item {x}")


@pytest.mark.ray
@pytest.mark.slow
def test_ray_map_failure_leaves_no_unhandled_error(ray_session, capfd):
    from agents.common.ray_backend import ray_map

    with pytest.raises(ValueError, match="bad item"):
        ray_map(_fail, [0, 1, 2], cpus_per_item=0.1)
    gc.collect()
    time.sleep(2.0)  # Ray reports unhandled errors from a background thread
    assert "Unhandled error" not in capfd.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_failing_worker_calls_leave_no_unhandled_error(ray_session, capfd):
    from agents.common.ray_backend import RayVecEnv
    from tests.agents.common.test_ray_backend import KWARGS

    env = RayVecEnv(2, [1, 1], seed=5, vec_env_kwargs=KWARGS, num_cpus_per_worker=0)
    try:
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            env.get_attr("nope")  # both workers fail; the second error used to go unread
    finally:
        env.close()
    gc.collect()
    time.sleep(2.0)
    assert "Unhandled error" not in capfd.readouterr().err
