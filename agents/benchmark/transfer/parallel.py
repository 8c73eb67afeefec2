"""Transfer runs as work items of the evaluation core's executor (`agents.benchmark.executor`).

`run_jobs` yields ``(index, RunResult)`` as runs finish, in completion order;
the caller (`protocol.run_transfer`) is the one writer of the resume cache and
puts the results back in item order, so the report does not depend on the
number of workers. A run's numbers depend only on its task, method, start rate
and seed (`loop.train_run`), never on the process that trains it.

With ``workers > 1`` the runs go to a `ProcessExecutor`: each worker runs torch on
one thread and receives the method objects once, when it starts, so a job is
only ``(task, method index, multiplier, seed)``. A `PolicyMethod` travels as its
bundle reference, and each worker loads the bundle once.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agents.benchmark.executor import Executor, ItemFailed, LocalExecutor, ProcessExecutor
from agents.benchmark.transfer.loop import RunResult, train_run
from agents.benchmark.transfer.suite import TaskSpec
from hpo_env.errors import ConfigError, HpoRlError

PRELOAD = (
    "agents.benchmark.transfer.loop",
    "agents.benchmark.transfer.methods",
    "torch._dynamo",
    "sklearn.datasets",
)
"""Modules the fork server imports once, so that a worker starts in a fraction of a second
instead of seconds: torch, what torch imports at the first optimizer step, and the data
loaders (scikit-learn pulls in scipy and pandas). Importing them runs no torch op, so torch's
thread pools do not exist yet when the server forks."""


class TransferRunError(RuntimeError):
    """A run of the transfer protocol raised an error that is not the user's (a bug); see its cause."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One run to train: ``train_run(task, methods[method_index], seed, lr_multiplier)``."""

    task: TaskSpec
    label: str
    """The run's label in the report (``policy@x10``), for error messages."""
    method_index: int
    lr_multiplier: float
    seed: int

    def describe(self) -> str:
        return f"task {self.task.name!r}, method {self.label!r}, seed {self.seed}"


def check_picklable(methods: Sequence[Any]) -> None:
    """Raise a `ConfigError` naming the first method that cannot be sent to a worker process."""
    for method in methods:
        try:
            pickle.dumps(method)
        except Exception as exc:
            name = getattr(method, "name", type(method).__name__)
            raise ConfigError(
                f"method {name!r} ({type(method).__qualname__}) cannot be sent to worker "
                f"processes ({type(exc).__name__}: {exc}); run it with workers=1 (--workers 1), "
                "or make it picklable (a module-level class whose state pickles)"
            ) from exc


def run_jobs(
    jobs: Sequence[Job], methods: Sequence[Any], workers: int
) -> Iterator[tuple[int, RunResult]]:
    """Train every job; yield ``(index into jobs, result)`` as each one finishes.

    With ``workers == 1`` the runs train here, one after another. When a run
    fails, the runs already under way still finish and are yielded (so the
    caller can cache them), the others are cancelled, and then the error is
    raised naming the failing run's task, method and seed.
    """
    if not jobs:
        return
    executor: Executor
    train: Callable[[Job], RunResult]
    if workers == 1:
        executor, train = LocalExecutor(), _LocalTrain(tuple(methods))
    else:
        check_picklable(methods)
        executor = ProcessExecutor(
            workers, preload=PRELOAD, initializer=_start_worker, initargs=(tuple(methods),)
        )
        train = _train_job
    try:
        yield from executor.map_unordered(train, jobs)
    except ItemFailed as failed:
        raise _named(failed.error, jobs[failed.index]) from failed.error  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _LocalTrain:
    methods: tuple[Any, ...]

    def __call__(self, job: Job) -> RunResult:
        return train_run(
            job.task, self.methods[job.method_index], job.seed, lr_multiplier=job.lr_multiplier
        )


def _named(error: Exception, job: Job) -> Exception:
    """A new error naming the failing run; a user error (`HpoRlError`) keeps its type."""
    message = f"transfer run failed ({job.describe()}): {type(error).__name__}: {error}"
    if isinstance(error, HpoRlError):
        try:
            return type(error)(message)
        except Exception:  # a subclass with another signature
            return HpoRlError(message)
    return TransferRunError(message)


_WORKER_METHODS: tuple[Any, ...] = ()
"""The method objects of this worker process (set once by `_start_worker`)."""


def _start_worker(methods: tuple[Any, ...]) -> None:
    global _WORKER_METHODS
    _WORKER_METHODS = methods


def _train_job(job: Job) -> RunResult:
    method = _WORKER_METHODS[job.method_index]
    return train_run(job.task, method, job.seed, lr_multiplier=job.lr_multiplier)
