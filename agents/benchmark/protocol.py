"""The benchmark protocol: work items (methods x tasks x seeds), run locally or on Ray, summarized."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.benchmark.config import BenchmarkConfig, eval_seeds
from agents.benchmark.methods import DEFAULT_METHODS, MethodSpec, check_methods
from agents.benchmark.stats import bootstrap_ci, iqm, win_scores
from agents.common.files import json_safe
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


# ----------------------------------------------------------------------------- aggregation

TARGETS = (
    (
        "win_rate_vs_constant_default",
        "policy beats constant-default on >= 80% of (task, seed) pairs",
        0.80,
        ">=",
    ),
    ("win_rate_vs_cosine", "policy beats cosine on >= 60% of (task, seed) pairs", 0.60, ">="),
    (
        "median_ratio_to_oracle",
        "median final validation loss within 1.10x of the oracle",
        1.10,
        "<=",
    ),
    ("robustness", "robustness: >= 80% of sweep runs within 1.25x of the oracle", 0.80, ">="),
)


def _records_table(
    records: Sequence[Mapping[str, Any]],
    task_names: Sequence[str],
    n_seeds_expected: int | None = None,
) -> dict[tuple[str, str, float | None, float | None], dict[str, np.ndarray]]:
    """(task, label, grid_lr, sweep_lr) -> {"final", "diverged"} arrays ordered by seed."""
    out: dict[tuple[str, str, float | None, float | None], dict[str, list[Any]]] = {}
    for rec in records:
        key = (rec["task"], rec["label"], rec["grid_lr"], rec["sweep_lr"])
        entry = out.setdefault(key, {"seeds": [], "final": [], "diverged": []})
        entry["seeds"] += rec["seeds"]
        entry["final"] += rec["final_objective"]
        entry["diverged"] += rec["diverged"]
    table = {}
    for key, entry in out.items():
        order = np.argsort(entry["seeds"])
        table[key] = {
            "seeds": np.asarray(entry["seeds"])[order],
            "final": np.asarray(entry["final"], dtype=np.float64)[order],
            "diverged": np.asarray(entry["diverged"], dtype=bool)[order],
        }
    return table


def summarize(records: Sequence[Mapping[str, Any]], config: BenchmarkConfig) -> dict[str, Any]:
    """Per-method aggregates, win rates, robustness and the targets from run records.

    The oracle of a task is the grid's constant learning rate with the lowest
    mean log final objective over the task's seeds (chosen on the same
    validation objective it is scored on: an upper bound on what tuning one
    constant can do, at ``grid_size`` times the compute). Every ratio is a
    method's final objective over the oracle's on the same (task, seed).
    """
    task_names = list(dict.fromkeys(r["task"] for r in records))
    table = _records_table(records, task_names)
    labels = list(dict.fromkeys(r["label"] for r in records if r["kind"] != "grid"))

    def finals(
        task: str, label: str, sweep_lr: float | None = None
    ) -> dict[str, np.ndarray] | None:
        return table.get((task, label, None, sweep_lr))

    oracle: dict[str, np.ndarray] = {}
    tasks_info: dict[str, Any] = {}
    for task in task_names:
        grid = {k[2]: v for k, v in table.items() if k[0] == task and k[2] is not None}
        if not grid:
            raise ConfigError(f"task {task!r} has no best-of-grid records; the oracle needs them")
        scores = {
            lr: float(np.mean(np.log(np.maximum(v["final"], 1e-30)))) for lr, v in grid.items()
        }
        best = min(scores, key=scores.__getitem__)
        oracle[task] = grid[best]["final"]
        family = next(r["family"] for r in records if r["task"] == task)
        sweep = sorted({k[3] for k in table if k[0] == task and k[3] is not None})
        grid_sorted = sorted(grid)
        tasks_info[task] = {
            "family": family,
            "oracle_lr": best,
            "oracle_at_grid_edge": best in (grid_sorted[0], grid_sorted[-1]),
            "grid_lrs": sorted(grid),
            "grid_mean_log_final": {f"{lr:.6g}": scores[lr] for lr in sorted(grid)},
            "sweep_lrs": sweep,
        }

    # The oracle also appears as a method row (ratio 1 by construction).
    for task in task_names:
        table[(task, "best_of_grid", None, None)] = {
            "seeds": table[next(k for k in table if k[0] == task and k[2] is not None)]["seeds"],
            "final": oracle[task],
            "diverged": np.zeros_like(oracle[task], dtype=bool),
        }
    labels.append("best_of_grid")

    per_method: dict[str, Any] = {}
    policy_table = np.stack([finals(t, "policy")["final"] for t in task_names])  # type: ignore[index]
    for label in labels:
        rows = [finals(t, label) for t in task_names]
        if any(r is None for r in rows):
            continue
        final = np.stack([r["final"] for r in rows])  # type: ignore[index]
        diverged = np.stack([r["diverged"] for r in rows])  # type: ignore[index]
        ratio = final / np.stack([oracle[t] for t in task_names])
        ci = bootstrap_ci(ratio, iqm, config.n_bootstrap, config.bootstrap_seed)
        entry: dict[str, Any] = {
            "iqm_ratio": float(iqm(ratio.reshape(-1))),
            "iqm_ratio_ci": list(ci),
            "median_ratio": float(np.median(ratio)),
            "divergence_rate": float(diverged.mean()),
            "ratio": ratio.tolist(),
            "final": final.tolist(),
        }
        if label != "policy":
            wins = win_scores(policy_table, final)
            entry["win_rate_policy_vs"] = float(wins.mean())
            entry["win_rate_policy_vs_ci"] = list(
                bootstrap_ci(wins, np.mean, config.n_bootstrap, config.bootstrap_seed)
            )
            entry["win_rate_policy_vs_per_task"] = {
                t: float(w.mean()) for t, w in zip(task_names, wins)
            }
        per_method[label] = entry

    # Robustness sweep: every (task, sweep lr, seed) run of a method vs the oracle on that (task, seed).
    for label, entry in per_method.items():
        by_lr: dict[str, list[float]] = {}
        within_all, diverged_all = [], []
        for task in task_names:
            for lr in tasks_info[task]["sweep_lrs"]:
                rec = finals(task, label, lr)
                if rec is None:
                    continue
                within = rec["final"] <= config.robustness_factor * oracle[task]
                index = tasks_info[task]["sweep_lrs"].index(lr)
                by_lr.setdefault(str(index), []).extend(within.astype(float).tolist())
                within_all.extend(within.tolist())
                diverged_all.extend(rec["diverged"].tolist())
        if within_all:
            entry["robustness"] = float(np.mean(within_all))
            entry["robustness_by_sweep_index"] = {k: float(np.mean(v)) for k, v in by_lr.items()}
            entry["sweep_divergence_rate"] = float(np.mean(diverged_all))

    targets = []
    policy = per_method.get("policy", {})
    values = {
        "win_rate_vs_constant_default": per_method.get("constant_default", {}).get(
            "win_rate_policy_vs"
        ),
        "win_rate_vs_cosine": per_method.get("cosine", {}).get("win_rate_policy_vs"),
        "median_ratio_to_oracle": policy.get("median_ratio"),
        "robustness": policy.get("robustness"),
    }
    for key, text, threshold, op in TARGETS:
        value = values[key]
        if value is None:
            status = "N/A"
        else:
            met = value >= threshold if op == ">=" else value <= threshold
            status = "MET" if met else "NOT MET"
        targets.append(
            {
                "name": key,
                "description": text,
                "value": value,
                "threshold": threshold,
                "status": status,
            }
        )

    return {
        "tasks": tasks_info,
        "task_names": task_names,
        "methods": per_method,
        "targets": targets,
        "sweep_lrs": list(config.sweep_lrs),
        "robustness_factor": config.robustness_factor,
    }


# ----------------------------------------------------------------------------- running it


def map_work_items(
    items: Sequence[WorkItem],
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """``[run_work_item(item) for item in items]`` here or as Ray tasks, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc="benchmark", unit="item", disable=not progress)
    try:
        if backend == "ray":
            from agents.common.ray_backend import ray_map  # imports ray lazily

            def advance(done: int, total: int) -> None:
                bar.update(done - bar.n)

            return ray_map(run_work_item, list(items), address=ray_address, progress=advance)
        outputs = []
        for item in items:
            bar.set_postfix_str(f"{item.label[:40]} ({len(item.arms)} arms)", refresh=False)
            outputs.append(run_work_item(item))
            bar.update(1)
        return outputs
    finally:
        bar.close()


def run_benchmark(
    config: BenchmarkConfig,
    policy: Any = "default",
    tasks: Sequence[Any] | Mapping[str, Any] | None = None,
    progress: bool = True,
    methods: Sequence[MethodSpec] = DEFAULT_METHODS,
) -> dict[str, Any]:
    """Run the held-out protocol and aggregate it.

    Args:
        config: The protocol's settings.
        policy: A bundle path or shipped name (``"default"``), or a policy object.
        methods: The baselines, as objects (`DEFAULT_METHODS`; add
            `agents.benchmark.pbt.pbt_method()` for Population Based Training).
        tasks: Task objects to use instead of ``config.tasks`` (e.g. tiny test tasks).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"config", "policy", "seeds", "summary", "records", "items", "wall_s"}``;
        ``summary`` is `summarize`'s output plus each method's compute multiple.
    """
    import time

    started = time.perf_counter()
    check_methods(methods)
    task_objs = tasks if tasks is not None else resolve_tasks(config.tasks)
    loaded = load_policy(policy)
    items = make_work_items(config, task_objs, policy, methods)
    outputs = map_work_items(items, config.backend, config.ray_address, progress)
    records = [rec for out in outputs for rec in out["records"]]
    summary = summarize(records, config)
    specs = {s.name: s for s in methods}
    for label, entry in summary["methods"].items():
        if label == "best_of_grid":
            entry.update(
                compute_multiple=float(config.grid_size),
                description="best constant lr of the grid (oracle)",
            )
        elif label == "policy":
            entry.update(compute_multiple=1.0, description="the tuning policy, deterministic")
        elif label in specs:
            entry.update(
                compute_multiple=specs[label].compute_multiple, description=specs[label].description
            )
    return {
        "config": {**dataclasses.asdict(config), "methods": [m.name for m in methods]},
        "policy": {
            "ref": policy if isinstance(policy, str) else type(policy).__name__,
            "metadata": json_safe(getattr(loaded, "metadata", {})),
            "hparams": list(loaded.space.names),
        },
        "seeds": eval_seeds(config.n_seeds, config.seed_offset),
        "summary": summary,
        "records": records,
        "items": [
            {"task": out["task"], "n_records": len(out["records"]), "wall_s": out["wall_s"]}
            for out in outputs
        ],
        "wall_s": time.perf_counter() - started,
    }
