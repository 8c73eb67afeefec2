"""Scale past one machine with Ray: connect (`ensure_ray`), and fan picklable work
items out as Ray tasks (`ray_map`). The trainer's Ray vector environment is
`agents.common.ray_vec_env.RayVecEnv`.

Ray is an optional extra (``pip install -e '.[ray]'``); it is imported lazily so
the rest of `agents` works without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
"""Object store of a Ray started here: observations are a few KB per step, and
Ray's default (30% of RAM) is wasteful on small shared machines."""

WORKER_START_TIMEOUT_S = 300.0
"""How long to wait for the first answer of every worker before concluding the
cluster cannot place them (Ray otherwise waits forever for free CPUs)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Ray backend needs the ray extra: pip install -e '.[ray]' (ray[tune]>=2.30)"
        ) from exc
    return ray


QUIET_ENV = "HPO_RL_QUIET"
"""``1``: libraries started here keep their own output to errors (the CLI sets it)."""


def ensure_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = LOCAL_OBJECT_STORE_BYTES,
    log_to_driver: bool | None = None,
) -> None:
    """Connect to Ray unless already connected.

    Args:
        address: None starts a local Ray on this machine; "auto" joins the
            cluster running here (started with ``ray start --head``); anything
            else is passed to `ray.init` (e.g. "ray://head:10001").
        num_cpus: CPUs of a local Ray (None: all cores). Ignored when joining.
        object_store_memory: bytes of object store for a local Ray (None: Ray's default).
        log_to_driver: forward workers' stdout/stderr to this process. None: yes,
            unless ``HPO_RL_QUIET=1`` (set by the ``hpo-rl`` CLI unless
            ``--verbose``), which also keeps Ray's own driver logging to errors.

    If Ray is already initialised (e.g. by a test fixture or the caller) it is
    used as is, whatever the arguments.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return
    quiet = os.environ.get(QUIET_ENV) == "1"
    if log_to_driver is None:
        log_to_driver = not quiet
    # Workers' logs (Tune's checkpoint lines) and the driver's INFO/WARNING lines
    # would otherwise interleave with the command's output and follow its result.
    logging_kwargs: dict[str, Any] = {"logging_level": logging.ERROR} if quiet else {}
    if address is None:
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1 to start a local Ray, got {num_cpus=}")
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_memory,
            log_to_driver=log_to_driver,
            **logging_kwargs,
        )
    else:
        if num_cpus is not None:
            warnings.warn(
                f"num_cpus={num_cpus} is ignored when joining the Ray cluster at {address!r}: "
                "the cluster's own resources apply",
                stacklevel=2,
            )
        ray.init(address=address, log_to_driver=log_to_driver, **logging_kwargs)


def ray_map(
    func: Callable[[T], R],
    items: Sequence[T],
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_item: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[func(item) for item in items]`` as Ray tasks, results in input order.

    Args:
        func: a picklable function (module-level, so workers can import it).
        items: picklable work items.
        address: Ray address for `ensure_ray` (None: local Ray unless already connected).
        num_cpus: CPUs of a local Ray started here (None: all cores).
        cpus_per_item: CPUs Ray reserves per task.
        progress: called as ``progress(n_done, n_total)`` whenever tasks finish.

    Raises:
        The first failing item's exception (Ray re-raises it as a subclass of
        the original type), with the item's index added to the message.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    items = list(items)
    if not items:
        return []
    if cpus_per_item < 0:
        raise ValueError(f"cpus_per_item must be >= 0, got {cpus_per_item=}")
    ensure_ray(address, num_cpus=num_cpus)
    ray = _import_ray()
    free = ray.available_resources().get("CPU", 0.0)
    if cpus_per_item > free:
        warnings.warn(
            f"ray_map: each task needs {cpus_per_item:g} CPUs but only {free:g} are free now "
            "(actors hold the rest?): tasks wait until CPUs free up",
            stacklevel=2,
        )
    remote = ray.remote(func).options(num_cpus=cpus_per_item, max_retries=0)
    refs = [remote.remote(item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    done_count = 0
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            try:
                results[i] = ray.get(ref)
            except Exception as exc:
                settle(ray, pending, cancel=True)
                add_note = getattr(exc, "add_note", None)  # Python >= 3.11
                if add_note is not None:
                    add_note(f"while running work item {i} of {len(items)}: {items[i]!r:.200}")
                raise
            done_count += 1
        if progress is not None:
            progress(done_count, len(items))
    return results


def settle(ray: Any, refs: Sequence[Any], cancel: bool = False) -> None:
    """Read (and drop) the outcome of every ref, cancelling them first if asked.

    Ray prints an "Unhandled error" traceback for each failed task whose result
    nobody retrieved, when its ref is garbage collected (mid-pytest, or after the
    CLI's result line). After the first failure has been raised, the others are
    read here so that they count as handled.
    """
    if cancel:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.get(ref, timeout=SETTLE_TIMEOUT_S)


SETTLE_TIMEOUT_S = 30.0
"""How long `settle` waits for each abandoned task to end (cancelled ones end at once)."""


def default_local_cpus(n_workers: int, cpus_per_worker: float = 1.0) -> int:
    """CPUs a local Ray needs for ``n_workers`` actors (rounded up, at least 1)."""
    return max(1, math.ceil(n_workers * cpus_per_worker))
