"""`run_transfer` on local worker processes: same numbers as one process, one cache writer, named failures."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pytest

from agents.benchmark import executor
from agents.benchmark.transfer import methods, parallel
from agents.benchmark.transfer.protocol import TransferConfig, run_transfer
from agents.benchmark.transfer.suite import TaskSpec
from hpo_env.errors import ConfigError

SMALL = dict(grid_multipliers=(0.1, 1.0, 10.0), sweep_multipliers=(0.1, 1.0, 10.0), progress=False)
N_LABELS = 7
"""constant, cosine_warmup, constant@x0.1, constant@x10, policy@x0.1, policy, policy@x10"""


class FailsWhenHotOnWine(methods.Constant):
    """Constant, but refuses start rates above 5x the wine task's (module level: it pickles)."""

    def build(self, params: Any, task: TaskSpec, start_lr: float) -> methods.RunControl:
        if task.data == "wine" and start_lr > 5 * task.start_lr:
            raise ZeroDivisionError("too hot")
        return super().build(params, task, start_lr)


def _run(tasks: list[TaskSpec], out: Path | None, workers: int, **kwargs: Any) -> dict:
    config = TransferConfig(
        split="validation",
        n_seeds=kwargs.pop("n_seeds", 2),
        out_dir=str(out) if out else None,
        workers=workers,
        **SMALL,  # type: ignore[arg-type]
    )
    return run_transfer(
        config,
        baselines=[methods.Constant(), methods.CosineWarmup()],
        tasks=tasks,
        stream=io.StringIO(),
        **kwargs,
    )


def _without_wall_time(curves: dict) -> dict:
    return {
        task: {label: {k: v for k, v in run.items() if k != "wall_s"} for label, run in by.items()}
        for task, by in curves.items()
    }


@pytest.mark.slow  # 14 tiny runs twice, and starting two worker processes: seconds
def test_two_workers_give_the_numbers_of_one(tiny_task: TaskSpec) -> None:
    one = _run([tiny_task], None, workers=1)
    two = _run([tiny_task], None, workers=2)
    assert len(one["objectives"]) == N_LABELS
    assert two["objectives"] == one["objectives"]
    assert two["diverged"] == one["diverged"]
    assert _without_wall_time(two["curves"]) == _without_wall_time(one["curves"])
    assert two["summary"] == one["summary"]


@pytest.mark.slow  # 14 tiny runs on two worker processes: seconds
def test_a_parallel_runs_cache_is_reused(
    tiny_task: TaskSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _run([tiny_task], tmp_path, workers=2)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == N_LABELS * 2  # every run once, each line whole

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(parallel, "train_run", no_training)
    monkeypatch.setattr(executor, "ProcessPoolExecutor", no_training)
    again = _run([tiny_task], tmp_path, workers=2)
    assert again["objectives"] == first["objectives"]
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines


@pytest.mark.slow  # 13 tiny runs, and on two workers starting the processes: seconds
@pytest.mark.filterwarnings("ignore:n_seeds=1")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_is_named_after_the_finished_ones_are_cached(
    workers: int, tiny_task: TaskSpec, tiny_sgd_task: TaskSpec, tmp_path: Path
) -> None:
    # Items run seed, task, label order: the policy at x10 on the second task is the
    # last one, so every other run has finished or is under way when it fails.
    with pytest.raises(parallel.TransferRunError) as raised:
        _run(
            [tiny_task, tiny_sgd_task],
            tmp_path,
            workers=workers,
            n_seeds=1,
            policy=FailsWhenHotOnWine(),
        )
    message = str(raised.value)
    assert "'tiny_wine'" in message and "policy@x10" in message and "seed 7000" in message
    assert "ZeroDivisionError: too hot" in message
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 2 * N_LABELS - 1


def test_workers_must_be_a_positive_int() -> None:
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ConfigError, match="--workers 4"):
            TransferConfig(split="validation", workers=bad)  # type: ignore[arg-type]
    assert TransferConfig(split="validation", workers=3).workers == 3


def test_the_cli_passes_workers() -> None:
    import argparse

    from agents.cli import transfer

    parser = argparse.ArgumentParser()
    transfer.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["transfer", "--split", "validation", "--quick", "--workers", "3"])
    assert transfer.config_from_args(args).workers == 3
    args = parser.parse_args(["transfer", "--split", "validation"])
    assert transfer.config_from_args(args).workers == 1


def test_a_policy_method_travels_as_its_reference() -> None:
    method = methods.PolicyMethod("default")
    loaded = pickle.dumps(method)
    method.policy  # noqa: B018  (loads the bundle)
    assert len(pickle.dumps(method)) == len(loaded) < 500
    copy = pickle.loads(pickle.dumps(method))
    assert copy.ref == "default" and copy._policy is None
    assert repr(copy) == repr(method)  # the cache key of its runs
    assert type(copy.policy) is type(method.policy)  # the shipped ensemble stays one


def test_an_unpicklable_method_is_named_before_any_training(tiny_task: TaskSpec) -> None:
    class Local(methods.Constant):  # a local class does not pickle
        pass

    with pytest.raises(ConfigError, match=r"'local_constant'.*--workers 1"):
        _run([tiny_task], None, workers=2, policy=Local(name="local_constant"))


class RefusesWine(methods.Constant):
    def build(self, params: Any, task: TaskSpec, start_lr: float) -> methods.RunControl:
        if task.data == "wine":
            raise ConfigError("no wine, please")
        return super().build(params, task, start_lr)


def test_a_user_error_in_a_run_keeps_its_type_and_names_the_run(tiny_sgd_task: TaskSpec) -> None:
    # The CLI prints a `HpoRlError` as one line: the run must be named in that line.
    with pytest.raises(ConfigError, match=r"^transfer run failed \(task 'tiny_wine', method"):
        _run([tiny_sgd_task], None, workers=1, policy=RefusesWine())
