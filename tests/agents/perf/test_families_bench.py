"""Smoke tests of `hpo-rl bench families` pieces at tiny sizes (the numbers are not judged)."""

from __future__ import annotations

import pytest
import torch

from agents.perf import families as bench
from tasks.functional.data import TableData
from tasks.functional.models import ResMlpConfig
from tasks.functional.task import FunctionalTask


@pytest.fixture
def tiny_task() -> FunctionalTask:
    return FunctionalTask(
        family="tiny",
        data=TableData("iris"),
        model=ResMlpConfig(4, 3, width=8),
        optimizer="adam",
        batch_size=8,
        default_learning_rate=1e-3,
    )


def test_batched_and_sequential_time_the_same_work(monkeypatch, tiny_task) -> None:
    monkeypatch.setattr(bench, "N_RUNS", 2)
    batched = bench.batched_seconds(tiny_task, n_updates=2, repeats=1, device=torch.device("cpu"))
    sequential = bench.sequential_seconds(tiny_task, n_updates=2, repeats=1)
    assert batched > 0 and sequential > 0


def test_env_decisions_per_second_over_the_train_mix() -> None:
    rates = bench.env_decisions_per_second(n_envs=2, n_tasks=1, n_steps=1, seed=3)
    assert rates["decisions_per_s"] >= rates["decisions_per_s_with_reset"] > 0


def test_cpu_name_is_text() -> None:
    assert isinstance(bench.cpu_name(), str) and bench.cpu_name()
