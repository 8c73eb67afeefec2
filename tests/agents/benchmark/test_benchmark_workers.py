"""The held-out benchmark on the core's process executor gives the numbers of one process."""

from __future__ import annotations

import dataclasses

import pytest

import agents.benchmark.protocol as evaluation
from agents.benchmark.config import BenchmarkConfig
from hpo_env.errors import ConfigError
from tests.agents.support.policies import StandInPolicy, TinyTaskWithDefaults

TINY = BenchmarkConfig(
    n_seeds=2,
    grid_size=3,
    grid_decades=(-1.0, 1.0),
    sweep_lrs=(),
    n_bootstrap=20,
    arms_per_item=4,
    quick=True,
)


@pytest.mark.slow  # a tiny benchmark twice, and starting two worker processes: seconds
def test_two_workers_give_the_numbers_of_one() -> None:
    tasks = [TinyTaskWithDefaults()]
    one = evaluation.run_benchmark(TINY, policy=StandInPolicy(), tasks=tasks, progress=False)
    two = evaluation.run_benchmark(
        dataclasses.replace(TINY, workers=2), policy=StandInPolicy(), tasks=tasks, progress=False
    )
    assert len(one["items"]) > 1
    for name, method in one["summary"]["methods"].items():
        assert two["summary"]["methods"][name]["final"] == method["final"]


def test_workers_must_be_a_positive_int() -> None:
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="--workers 4"):
            dataclasses.replace(TINY, workers=bad)
    with pytest.raises(TypeError, match="workers"):
        dataclasses.replace(TINY, workers=True)


def test_the_cli_passes_workers() -> None:
    import argparse

    from agents.cli import benchmark

    parser = argparse.ArgumentParser()
    benchmark.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", "--quick", "--workers", "3"])
    assert benchmark.config_from_args(args).workers == 3
