"""Transfer runs in this process or on a pool of local worker processes.

`run_jobs` yields ``(index, RunResult)`` as runs finish, in completion order;
the caller (`protocol.run_transfer`) is the one writer of the resume cache and
puts the results back in item order, so the report does not depend on the
number of workers. A run's numbers depend only on its task, method, start rate
and seed (`loop.train_run`), never on the process that trains it.

Workers are forked from a fork server, a fresh process that has imported
torch and the data loaders but never run a torch op (forking a process that
has used torch's thread pools, like this one, can deadlock); where the OS has
no fork server they are spawned. Each runs torch on one thread and receives
the method objects once, when it starts: a job is only ``(task, method index,
multiplier, seed)``. A `PolicyMethod` travels as its bundle reference, and
each worker loads the bundle once.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

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
    if workers == 1:
        for index, job in enumerate(jobs):
            try:
                result = train_run(
                    job.task, methods[job.method_index], job.seed, lr_multiplier=job.lr_multiplier
                )
            except Exception as exc:
                raise _named(exc, job) from exc
            yield index, result
        return
    check_picklable(methods)
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=_worker_context(),
        initializer=_start_worker,
        initargs=(tuple(methods),),
    )
    try:
        pending: dict[Future[RunResult], int] = {
            executor.submit(_train_job, job): index for index, job in enumerate(jobs)
        }
        failure: tuple[BaseException, Job] | None = None
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    yield index, future.result()
                elif failure is None:
                    failure = (error, jobs[index])
                    for other in pending:
                        other.cancel()  # those not started yet; the running ones finish
        if failure is not None:
            error, job = failure
            if not isinstance(error, Exception):
                raise error  # KeyboardInterrupt and the like stay what they are
            raise _named(error, job) from error
    finally:
        # Also on Ctrl-C or when the caller stops early: drop what has not started.
        executor.shutdown(wait=True, cancel_futures=True)


def _worker_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where the OS has it (a fresh server process that imported
    `PRELOAD` and never ran torch: forking it is safe and cheap), else ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))  # used when the server first starts
    return context


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
    from agents.common.threads import configure_threads

    global _WORKER_METHODS
    configure_threads(1)  # the parallelism is the processes; threads would only contend
    _WORKER_METHODS = methods


def _train_job(job: Job) -> RunResult:
    method = _WORKER_METHODS[job.method_index]
    return train_run(job.task, method, job.seed, lr_multiplier=job.lr_multiplier)
