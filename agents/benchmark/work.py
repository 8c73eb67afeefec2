"""The held-out families as a task provider: methods x tasks x seeds as picklable work items,
each one batched run, mapped on the evaluation core's executor (here or on Ray)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.benchmark.config import BenchmarkConfig, eval_seeds
from agents.benchmark.methods import DEFAULT_METHODS, MethodSpec, check_methods
from agents.controllers.learned import PolicyController
from agents.controllers.rollout import (
    RolloutResult,
    StackedController,
    _rollout_core,
    _split_result,
    _start_values,
)
from hpo_env.errors import ConfigError


def default_lr_of(task: Any) -> float:
    """The task's default learning rate (``default_hparams()``, else SB3's 3e-4 for control tasks)."""
    from agents.controllers.schedules import LR, default_constant_hparams

    values = default_constant_hparams(task)
    if LR not in values:
        raise ConfigError(
            f"task {getattr(task, 'name', task)!r} has no default learning rate: give it "
            "default_hparams() returning {'learning_rate': ...}"
        )
    return float(values[LR])


def grid_lrs_for(task: Any, config: BenchmarkConfig) -> list[float]:
    """The oracle's constant learning rates: log-spaced around the task's default."""
    lo, hi = config.grid_decades
    return [float(default_lr_of(task) * 10.0**d) for d in np.linspace(lo, hi, config.grid_size)]


def sweep_lrs_for(task: Any, config: BenchmarkConfig) -> list[float]:
    """The sweep's initial learning rates for ``task``.

    ``config.sweep_lrs`` times ``10**min(0, ceil(log10(default_lr) + 2))``:
    unchanged for tasks whose default is >= 1e-3 (every family shipped now:
    SGD at 5e-2, Adam and the control learner at 3e-3), shifted down a decade
    at a time for smaller defaults, so the hottest start stays around 100x the
    default rather than far beyond anything a user would try.
    """
    exponent = min(0, int(np.ceil(np.log10(default_lr_of(task)) + 2.0 - 1e-9)))
    return [float(v * 10.0**exponent) for v in sorted(config.sweep_lrs)]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One method in one setting, run on every seed of a work item."""

    label: str
    """``policy``, a method name, or ``grid@<lr>``."""
    kind: str
    """``policy``, ``method`` or ``grid``."""
    method: Any = None
    """The `agents.benchmark.methods.MethodSpec` (kind ``method``)."""
    grid_lr: float | None = None
    """The constant learning rate (kind ``grid``)."""
    sweep_lr: float | None = None
    """Initial learning rate in the robustness sweep; None = the main protocol (task defaults)."""


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """A picklable unit of benchmark work: arms x seeds of one task, as one batched run."""

    task: Any
    seeds: tuple[int, ...]
    arms: tuple[Arm, ...]
    val_every: int = 1
    policy: Any = None
    """A bundle path or name (loaded in the worker) or a policy object."""
    task_label: str | None = None
    """The task's name in reports (e.g. ``digits_mlp:heldout``); default ``task.name``."""

    @property
    def label(self) -> str:
        return self.task_label or str(getattr(self.task, "name", self.task))

    def __repr__(self) -> str:
        labels = [
            a.label if a.sweep_lr is None else f"{a.label}@start{a.sweep_lr:g}" for a in self.arms
        ]
        return f"WorkItem(task={self.label!r}, seeds={list(self.seeds)}, arms={labels})"


_POLICY_CACHE: dict[str, Any] = {}


def load_policy(ref: Any) -> Any:
    """A policy from a bundle path or shipped name (cached per process), or ``ref`` itself."""
    if not isinstance(ref, str):
        return ref
    if ref not in _POLICY_CACHE:
        from agents.policy.tuning_policy import TuningPolicy

        _POLICY_CACHE[ref] = TuningPolicy.load(ref)
    return _POLICY_CACHE[ref]


def _arm_controller(arm: Arm, task: Any, policy: Any) -> Any:
    from agents.controllers.schedules import ConstantController

    if arm.kind == "policy":
        return PolicyController(load_policy(policy), name="policy")
    if arm.kind == "grid":
        return ConstantController({"learning_rate": float(arm.grid_lr)}, name=arm.label)  # type: ignore[arg-type]
    return arm.method.factory(task)


def run_work_item(item: WorkItem) -> dict[str, Any]:
    """Run one work item; picklable in and out, so it maps locally or as a Ray task.

    Returns:
        ``{"task", "family", "seeds", "wall_s", "records"}`` with one record per
        arm: the arm's ``label``, ``kind``, ``grid_lr``, ``sweep_lr`` and its
        `RolloutResult.to_dict` fields.
    """
    import time

    from agents.controllers.schedules import default_constant_hparams

    started = time.perf_counter()
    task, seeds = item.task, [int(s) for s in item.seeds]
    defaults = default_constant_hparams(task)
    results: list[tuple[Arm, RolloutResult]] = []
    stackable = [a for a in item.arms if not (a.kind == "method" and a.method.runner is not None)]
    for arm in item.arms:
        if arm not in stackable:
            run = arm.method.runner(
                task,
                seeds,
                val_every=item.val_every,
                initial_lr=arm.sweep_lr,
                initial_hparams=defaults,
            )
            results.append((arm, run))
    if stackable:
        controllers = [_arm_controller(a, task, item.policy) for a in stackable]
        start: dict[str, list[float]] = {}
        for arm in stackable:
            values = _start_values(defaults, arm.sweep_lr)
            for name, value in values.items():
                start.setdefault(name, []).extend([value] * len(seeds))
        if any(len(v) != len(seeds) * len(stackable) for v in start.values()):
            raise ConfigError(f"arms of {item!r} start from different sets of hyperparameters")
        stacked = StackedController(controllers, [len(seeds)] * len(stackable))
        whole = _rollout_core(stacked, task, seeds * len(stackable), item.val_every, start, None)
        for arm, part in zip(
            stackable, _split_result(whole, stacked.blocks, [a.label for a in stackable])
        ):
            part.initial_lr = arm.sweep_lr
            results.append((arm, part))
    records = []
    for arm, result in results:
        record = result.to_dict()
        record.update(
            task=item.label,
            task_full_name=result.task,
            label=arm.label,
            kind=arm.kind,
            grid_lr=arm.grid_lr,
            sweep_lr=arm.sweep_lr,
        )
        records.append(record)
    return {
        "task": item.label,
        "family": str(getattr(task, "family", "")),
        "seeds": seeds,
        "wall_s": time.perf_counter() - started,
        "records": records,
    }


def resolve_tasks(names: Sequence[str]) -> dict[str, Any]:
    """Report label -> task object (empty ``names`` = every held-out task of `tasks.distribution`)."""
    from tasks.distribution import list_tasks, task_by_name

    return {name: task_by_name(name) for name in (names or list_tasks("heldout"))}


def make_work_items(
    config: BenchmarkConfig,
    tasks: Sequence[Any] | Mapping[str, Any],
    policy: Any,
    methods: Sequence[MethodSpec] = DEFAULT_METHODS,
) -> list[WorkItem]:
    """Every work item of the protocol: per task, the policy, the baselines and the grid
    from the task's defaults, then the policy and the sweep methods from each sweep lr.

    ``tasks`` is a list of tasks or a mapping report label -> task."""
    if not isinstance(tasks, Mapping):
        tasks = {str(getattr(t, "name", t)): t for t in tasks}
    if not tasks:
        raise ConfigError("the benchmark needs at least one task, got none")
    check_methods(methods)
    specs = list(methods)
    seeds = eval_seeds(config.n_seeds, config.seed_offset)
    seed_chunks = [
        tuple(seeds[i : i + (config.seeds_per_item or len(seeds))])
        for i in range(0, len(seeds), config.seeds_per_item or len(seeds))
    ]
    items = []
    for label, task in tasks.items():
        arms = [Arm("policy", "policy")]
        arms += [Arm(s.name, "method", method=s) for s in specs]
        arms += [Arm(f"grid@{lr:.3g}", "grid", grid_lr=lr) for lr in grid_lrs_for(task, config)]
        for lr in sweep_lrs_for(task, config):
            arms.append(Arm("policy", "policy", sweep_lr=lr))
            arms += [Arm(s.name, "method", method=s, sweep_lr=lr) for s in specs if s.in_sweep]
        size = config.arms_per_item or len(arms)
        for chunk in seed_chunks:
            for i in range(0, len(arms), size):
                items.append(
                    WorkItem(
                        task, chunk, tuple(arms[i : i + size]), config.val_every, policy, label
                    )
                )
    return items


WORKER_PRELOAD = ("agents.benchmark.work", "agents.policy.tuning_policy", "tasks.distribution")
"""Modules the local worker processes' fork server imports once (no torch op runs)."""


def map_work_items(
    items: Sequence[WorkItem],
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """``[run_work_item(item) for item in items]`` on the executor ``backend`` names
    (`agents.benchmark.executor`: here, ``workers`` local processes, or Ray tasks), with
    a progress bar; the outputs come back in item order whatever ran them."""
    from tqdm.auto import tqdm

    from agents.benchmark.executor import Executor, ItemFailed, RayExecutor, make_executor

    bar = tqdm(total=len(items), desc="benchmark", unit="item", disable=not progress)

    def advance(done: int, total: int) -> None:
        bar.update(done - bar.n)

    executor: Executor = (
        RayExecutor(ray_address, progress=advance)
        if backend == "ray"
        else make_executor(backend, workers=workers, preload=WORKER_PRELOAD)
    )
    outputs: dict[int, dict[str, Any]] = {}
    try:
        for index, output in executor.map_unordered(run_work_item, list(items)):
            outputs[index] = output
            if backend != "ray":
                bar.set_postfix_str(f"{items[index].label[:40]} ({len(items[index].arms)} arms)")
                bar.update(1)
    except ItemFailed as failed:
        raise failed.error from None
    finally:
        bar.close()
    return [outputs[i] for i in range(len(items))]
