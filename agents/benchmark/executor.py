"""The evaluation core's one executor interface: where work items run.

An executor maps a picklable, module-level function over picklable items and
yields ``(index, result)`` as items finish; the caller puts results back in item
order, so no number depends on the executor. Three implementations:

- `LocalExecutor`: this process, one item after another;
- `ProcessExecutor`: a pool of local worker processes (forked from a fork server
  that imported ``preload`` but never ran a torch op; spawned where the OS has no
  fork server), each on one torch thread;
- `RayExecutor`: Ray tasks (`agents.common.ray_backend.ray_map`), on one machine
  or a cluster.

When an item fails, the items already under way still finish and are yielded
(a caller can cache them), the rest are dropped, and `ItemFailed` is raised with
the failing item's index and the original error as its cause.

Example:
    >>> list(LocalExecutor().map_unordered(abs, [-1, 2]))
    [(0, 1), (1, 2)]
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from hpo_env.errors import ConfigError, unknown_name_error


class ItemFailed(Exception):
    """Work item ``index`` raised ``error`` (also the ``__cause__``)."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"work item {index} failed: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


class Executor(Protocol):
    """Maps ``fn`` over ``items``; yields ``(index, fn(items[index]))`` as items finish."""

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]: ...


class LocalExecutor:
    """Every item in this process, in order."""

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(items):
            try:
                result = fn(item)
            except Exception as exc:
                raise ItemFailed(index, exc) from exc
            yield index, result

    def __repr__(self) -> str:
        return "LocalExecutor()"


def _worker_context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    """``forkserver`` where the OS has it (a fresh server process that imported
    ``preload`` and never ran torch: forking it is safe and cheap), else ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))  # used when the server first starts
    return context


def _one_thread_then(initializer: Callable[..., None] | None, *initargs: Any) -> None:
    from agents.common.threads import configure_threads

    configure_threads(1)  # the parallelism is the processes; threads would only contend
    if initializer is not None:
        initializer(*initargs)


class ProcessExecutor:
    """A pool of ``workers`` local processes (one torch thread each).

    Args:
        workers: Processes (at most one per item).
        preload: Modules the fork server imports once (heavy imports that run no torch op).
        initializer: Called once in each worker with ``initargs`` (e.g. to receive
            large objects once instead of with every item).
        initargs: Its arguments.
    """

    def __init__(
        self,
        workers: int,
        preload: Sequence[str] = (),
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
        self.workers = workers
        self.preload = tuple(preload)
        self.initializer = initializer
        self.initargs = initargs

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        executor = ProcessPoolExecutor(
            max_workers=min(self.workers, len(items)),
            mp_context=_worker_context(self.preload),
            initializer=_one_thread_then,
            initargs=(self.initializer, *self.initargs),
        )
        try:
            pending: dict[Future[Any], int] = {
                executor.submit(fn, item): index for index, item in enumerate(items)
            }
            failure: tuple[int, BaseException] | None = None
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
                        failure = (index, error)
                        for other in pending:
                            other.cancel()  # those not started yet; the running ones finish
            if failure is not None:
                index, error = failure
                if not isinstance(error, Exception):
                    raise error  # KeyboardInterrupt and the like stay what they are
                raise ItemFailed(index, error) from error
        finally:
            # Also on Ctrl-C or when the caller stops early: drop what has not started.
            executor.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers})"


class RayExecutor:
    """Items as Ray tasks (`agents.common.ray_backend.ray_map`; imports ray lazily).

    Args:
        address: Ray cluster address (None: a local Ray, unless already connected).
        progress: Called as ``progress(n_done, n_total)`` as tasks finish.
    """

    def __init__(
        self, address: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.address = address
        self.progress = progress

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        from agents.common.ray_backend import ray_map

        yield from enumerate(ray_map(fn, list(items), address=self.address, progress=self.progress))

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"


BACKENDS = ("local", "process", "ray")


def make_executor(
    backend: str = "local",
    *,
    workers: int = 1,
    ray_address: str | None = None,
    **process_kwargs: Any,
) -> Executor:
    """The executor a ``backend`` name asks for (names are mapped here, at the edge).

    ``local`` with ``workers > 1`` is a `ProcessExecutor`."""
    if backend == "ray":
        return RayExecutor(ray_address)
    if backend == "process" or (backend == "local" and workers > 1):
        return ProcessExecutor(workers, **process_kwargs)
    if backend == "local":
        return LocalExecutor()
    raise unknown_name_error("backend", backend, BACKENDS)


def map_in_order(executor: Executor, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]`` on ``executor``; a failure re-raises the item's own error."""
    results: dict[int, Any] = {}
    try:
        for index, result in executor.map_unordered(fn, items):
            results[index] = result
    except ItemFailed as failed:
        raise failed.error from None
    return [results[i] for i in range(len(items))]
