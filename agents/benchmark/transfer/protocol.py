"""`TransferConfig` and `run_transfer`: every method on every task and seed, through one loop.

Work items are (task, method, start-rate multiplier, seed). The best-of-grid
oracle (`agents.benchmark.core.choose_oracle`, chosen per task) is the constant
schedule at the grid multiplier with the lowest mean log objective over the seeds; the robustness sweep
is the policy started at each sweep multiplier (the constant schedule's
robustness is read off the grid points the sweep shares). Items shared by both (constant at x1, at x0.1 ...) run once.

Finished runs are appended to ``<out_dir>/runs.jsonl`` (`cache`); a rerun with the
same settings, code and bundle skips them, so a killed run resumes and the report can be redrawn.
With ``workers > 1`` the runs not cached yet train on local worker processes
(`parallel.run_jobs`); this process still writes the cache, as each run
finishes, and assembles the output in item order: the report does not depend
on the number of workers.

Example:
    >>> result = run_transfer(TransferConfig(split="validation", quick=True))  # doctest: +SKIP
    >>> result["summary"]["vs"]["constant"]["win_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from agents.benchmark.transfer import methods as transfer_methods
from agents.benchmark.transfer.cache import (
    append_cache,
    cache_key,
    code_revision,
    read_cache,
)
from agents.benchmark.transfer.cache import policy_fingerprint as _policy_fingerprint
from agents.benchmark.transfer.loop import RunResult
from agents.benchmark.transfer.parallel import Job, run_jobs
from agents.benchmark.transfer.suite import SPLITS, TaskSpec, tasks_for
from agents.benchmark.transfer.summary import CONSTANT, POLICY, run_label, summarize
from hpo_env.errors import ConfigError, unknown_name_error

TRANSFER_SEED_BASE = 7_000
"""Run seeds are ``TRANSFER_SEED_BASE + seed_offset + i`` (the tasks are outside
meta-training, so any seed is fresh; a fixed base keeps reports comparable)."""
QUICK_TASKS = {
    "test": ("breast_cancer_resmlp_sgd_momentum", "diabetes_resmlp_adam"),
    "validation": ("classification_mlp_adam", "digits_mlp_sgd_momentum"),
}
"""The two cheap tasks of ``--quick`` per split."""


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """The transfer protocol's settings (CLI: ``hpo-rl transfer``)."""

    split: str = "test"
    """``"validation"`` for choosing (recipes, checkpoints, seeds), ``"test"`` for reporting."""
    policy: str = "default"
    """Shipped bundle name or bundle directory."""
    n_seeds: int = 5
    """Run seeds per task."""
    seed_offset: int = 0
    """Skip this many seeds (another offset gives a disjoint seed set)."""
    tasks: tuple[str, ...] = ()
    """Task names of the split; empty = all (quick: two cheap ones)."""
    quick: bool = False
    """Smoke mode for CI: two tasks, two seeds, budgets capped at ``quick_updates``."""
    quick_updates: int = 150
    """Update budget of every task in quick mode."""
    grid_multipliers: tuple[float, ...] = (0.1, 10**-0.5, 1.0, 10**0.5, 10.0)
    """Constant rates of the best-of-grid oracle, as multiples of the start rate."""
    sweep_multipliers: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
    """Start-rate multiples of the robustness sweep."""
    robustness_factor: float = 1.25
    """A sweep run is robust when its objective is within this factor of the oracle's."""
    out_dir: str | None = None
    """Folder for runs.jsonl (resume cache) and the report; None = nothing written."""
    resume: bool = True
    """Reuse finished runs from ``<out_dir>/runs.jsonl``."""
    progress: bool = True
    """Show a tqdm progress bar (on stderr)."""
    workers: int = 1
    """Local worker processes for the runs (1 = train here); results do not depend on it."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise unknown_name_error("split", self.split, SPLITS)
        if not isinstance(self.n_seeds, int) or self.n_seeds < 1:
            raise ConfigError(f"n_seeds must be an int >= 1 (e.g. --seeds 5), got {self.n_seeds!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(
                f"workers must be an int >= 1 (e.g. --workers 4), got {self.workers!r}"
            )
        if self.n_seeds < 2 and not self.quick:
            # Legal (e.g. one seed per worker process, merged later), but its CIs are no CIs.
            warnings.warn(
                f"n_seeds={self.n_seeds}: the bootstrap CIs need 2 or more seeds per task",
                stacklevel=2,
            )
        if self.seed_offset < 0 or self.quick_updates < 2:
            raise ConfigError(
                f"expected seed_offset >= 0 and quick_updates >= 2, got "
                f"{self.seed_offset=}, {self.quick_updates=}"
            )
        for name in ("grid_multipliers", "sweep_multipliers"):
            values = getattr(self, name)
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise ConfigError(f"{name} must be non-empty positive numbers, got {values!r}")
        if 1.0 not in self.grid_multipliers or 1.0 not in self.sweep_multipliers:
            raise ConfigError(
                "grid_multipliers and sweep_multipliers must contain 1.0 (the user's start rate), "
                f"got {self.grid_multipliers!r} and {self.sweep_multipliers!r}"
            )
        if not self.robustness_factor >= 1.0:
            raise ConfigError(f"robustness_factor must be >= 1, got {self.robustness_factor!r}")

    def task_specs(self) -> list[TaskSpec]:
        names = self.tasks or (QUICK_TASKS[self.split] if self.quick else ())
        specs = tasks_for(self.split, names)
        if self.quick:
            specs = [t.with_budget(min(t.n_updates, self.quick_updates)) for t in specs]
        return specs

    def seeds(self) -> list[int]:
        return [TRANSFER_SEED_BASE + self.seed_offset + i for i in range(self.n_seeds)]


def _work_items(
    config: TransferConfig, specs: list[TaskSpec], baselines: list[Any], policy: Any
) -> list[tuple[TaskSpec, str, Any, float, int]]:
    """Seed-major, so a partial run already covers every task."""
    per_task: dict[str, tuple[Any, float]] = {}
    for method in baselines:
        per_task[run_label(method.name, 1.0)] = (method, 1.0)
    constant = next((m for m in baselines if m.name == CONSTANT), transfer_methods.Constant())
    # The constant schedule's sweep points are the grid points that the sweep
    # shares (x0.1, x1, x10): its robustness comes for free, without extra runs.
    for m in config.grid_multipliers:
        per_task[run_label(CONSTANT, m)] = (constant, m)
    for m in config.sweep_multipliers:
        per_task[run_label(POLICY, m)] = (policy, m)
    return [
        (task, label, method, m, seed)
        for seed in config.seeds()
        for task in specs
        for label, (method, m) in per_task.items()
    ]


def run_transfer(
    config: TransferConfig,
    baselines: list[Any] | None = None,
    policy: Any = None,
    stream: Any = None,
    tasks: list[TaskSpec] | None = None,
) -> dict[str, Any]:
    """Run the protocol; summarise; write the report when ``config.out_dir`` is set.

    Args:
        config: The settings.
        baselines: Method objects (default: `methods.default_baselines`); one must
            be named ``constant`` for the per-task table and the win-rate target.
        policy: A method object for the policy (default: `methods.PolicyMethod(config.policy)`).
        stream: Where to print the summary (default: stdout when ``config.out_dir`` is
            set, else nothing).
        tasks: Task specs instead of ``config.tasks`` (e.g. your own; tests use tiny ones).

    Returns:
        ``config``, ``tasks``, ``seeds``, ``objectives`` (label -> task -> per-seed
        objectives), ``diverged`` (same shape), ``curves`` (task -> label -> the
        first seed's `RunResult`), ``summary`` (see `summary.summarize`), ``wall_s``
        and, when written, ``files``.
    """
    started = time.perf_counter()
    specs = list(tasks) if tasks is not None else config.task_specs()
    if not specs:
        raise ConfigError("no tasks to run: pass task names of the split, or leave them empty")
    baselines = list(baselines if baselines is not None else transfer_methods.default_baselines())
    policy = policy or transfer_methods.PolicyMethod(config.policy)
    names = [m.name for m in baselines]
    if CONSTANT not in names or len(set(names)) != len(names):
        raise ConfigError(f"baselines need unique names including 'constant', got {names}")
    if isinstance(policy, transfer_methods.PolicyMethod):
        policy.policy  # load now: a bad bundle fails before any training  # noqa: B018
    fingerprint = _policy_fingerprint(config.policy)
    items = _work_items(config, specs, baselines, policy)
    cache_path = Path(config.out_dir) / "runs.jsonl" if config.out_dir else None
    cache = read_cache(cache_path) if (cache_path and config.resume) else {}
    code = code_revision()
    keys = [
        # Only the policy's runs depend on the bundle: the baselines' cached runs
        # survive a retrained policy, so comparing a new bundle trains its runs alone.
        # Every run depends on the code (loop, schedules, prior): a code change reruns all.
        cache_key(task, label, method, m, seed, fingerprint if method is policy else "", code)
        for task, label, method, m, seed in items
    ]
    by_item: dict[int, RunResult] = {
        i: RunResult(**cache[key]) for i, key in enumerate(keys) if key in cache
    }
    todo = [i for i in range(len(items)) if i not in by_item]
    method_objects = list({id(item[2]): item[2] for item in items}.values())
    method_index = {id(method): j for j, method in enumerate(method_objects)}
    jobs = [
        Job(task, label, method_index[id(method)], m, seed)
        for task, label, method, m, seed in (items[i] for i in todo)
    ]
    bar = _progress(len(items), config.progress)
    bar.update(len(by_item))
    try:
        for j, result in run_jobs(jobs, method_objects, config.workers):
            i = todo[j]
            if cache_path is not None:
                append_cache(cache_path, keys[i], result)
            by_item[i] = result
            bar.set_postfix_str(f"{jobs[j].task.name} {jobs[j].label}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    results: dict[tuple[str, str, int], RunResult] = {
        (task.name, label, seed): by_item[i] for i, (task, label, _, _, seed) in enumerate(items)
    }
    labels = list(dict.fromkeys(label for _, label, *_ in items))
    seeds = config.seeds()
    output: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "policy": {"ref": str(config.policy), "fingerprint": fingerprint},
        "code_revision": code,
        "tasks": [dataclasses.asdict(t) for t in specs],
        "seeds": seeds,
        "objectives": {
            label: {t.name: [results[(t.name, label, s)].objective for s in seeds] for t in specs}
            for label in labels
        },
        "diverged": {
            label: {t.name: [results[(t.name, label, s)].diverged for s in seeds] for t in specs}
            for label in labels
        },
        "curves": {
            t.name: {label: results[(t.name, label, seeds[0])].to_json() for label in labels}
            for t in specs
        },
    }
    output["summary"] = summarize(output, config, [m.name for m in baselines])
    output["wall_s"] = time.perf_counter() - started
    # Summed training time of every run, cached ones included: the cost of the
    # protocol itself, whatever part of it this call reused.
    output["run_s"] = sum(result.wall_s for result in results.values())
    if config.out_dir is not None:
        from agents.benchmark.transfer.report import print_summary, write_report

        output["files"] = {k: str(v) for k, v in write_report(output, config.out_dir).items()}
        print_summary(output, stream or sys.stdout)
    elif stream is not None:
        from agents.benchmark.transfer.report import print_summary

        print_summary(output, stream)
    return output


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc="transfer", unit="run", file=sys.stderr)
