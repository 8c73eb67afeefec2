"""The held-out benchmark protocol in one call: `run_benchmark` (work items -> records -> summary)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from agents.benchmark.config import BenchmarkConfig, eval_seeds
from agents.benchmark.methods import DEFAULT_METHODS, MethodSpec, check_methods
from agents.benchmark.summary import summarize
from agents.benchmark.work import (
    load_policy,
    make_work_items,
    map_work_items,
    resolve_tasks,
)
from agents.common.files import json_safe


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
    outputs = map_work_items(items, config.backend, config.ray_address, progress, config.workers)
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
