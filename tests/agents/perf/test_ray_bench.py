"""`hpo-rl bench ray` on the tiny task: the report's shape and its last two lines."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from agents.perf.ray import run_ray_bench
from tests.hpo_env.tiny_task import TinySampler


@pytest.mark.ray
@pytest.mark.slow
def test_ray_bench_reports_scaling_and_overhead(ray_session) -> None:
    lines: list[str] = []
    result = run_ray_bench(
        quick=True,
        n_envs=4,
        n_steps=3,
        repeats=1,
        task=None,
        vec_env_kwargs={"distribution": TinySampler(), "hparams": ("learning_rate",)},
        print_fn=lines.append,
    )
    assert lines[-2] == f"ray_scaling_2w={result.scaling_2w:.2f}"
    assert lines[-1] == f"ray_overhead_1w={result.overhead_1w:.3f}"
    assert min(result.local_steps_per_s, result.ray_1w_steps_per_s, result.ray_2w_steps_per_s) > 0
    assert ray_session.is_initialized(), "the bench must not shut down a Ray it did not start"


def test_ray_bench_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even number"):
        run_ray_bench(n_envs=3)
