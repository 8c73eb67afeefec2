"""Aggregate a benchmark's run records: per-method ratios to the oracle, win rates with CIs, robustness, and the targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.benchmark.config import BenchmarkConfig
from agents.benchmark.core import FinalTable, choose_oracle, mean_log
from agents.benchmark.stats import (
    bootstrap_ci,
    iqm,
    meets,
    strict_win_tie_loss,
    strict_wins,
    within_factor,
)
from hpo_env.errors import ConfigError

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


def grid_label(index: int) -> str:
    """The `FinalTable` label of a task's ``index``-th lowest grid learning rate."""
    return f"grid#{index}"


def sweep_label(label: str, index: int) -> str:
    """The `FinalTable` label of ``label`` started from a task's ``index``-th lowest sweep lr."""
    return f"{label}@sweep#{index}"


def records_table(
    records: Sequence[Mapping[str, Any]],
) -> tuple[FinalTable, dict[str, dict[str, Any]]]:
    """The held-out records as the core's `FinalTable`, and each task's grid and sweep lrs.

    Labels: a method's own label for the main protocol, `grid_label` for the grid
    points (each task's grid is scaled to its default rate, so points are numbered
    from the lowest), `sweep_label` for the robustness sweep. A label gets a row only
    if every task has it; seeds are sorted.
    """
    runs: dict[tuple[str, str, float | None, float | None], dict[str, list[Any]]] = {}
    for rec in records:
        key = (rec["task"], rec["label"], rec["grid_lr"], rec["sweep_lr"])
        entry = runs.setdefault(key, {"seeds": [], "final": [], "diverged": []})
        entry["seeds"] += rec["seeds"]
        entry["final"] += rec["final_objective"]
        entry["diverged"] += rec["diverged"]
    task_names = list(dict.fromkeys(r["task"] for r in records))
    info: dict[str, dict[str, Any]] = {}
    by_label: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for task in task_names:
        grid = sorted({k[2] for k in runs if k[0] == task and k[2] is not None})
        sweep = sorted({k[3] for k in runs if k[0] == task and k[3] is not None})
        family = next(r["family"] for r in records if r["task"] == task)
        info[task] = {"family": family, "grid_lrs": grid, "sweep_lrs": sweep}
        for (t, label, grid_lr, sweep_lr), entry in runs.items():
            if t != task:
                continue
            if grid_lr is not None:
                name = grid_label(grid.index(grid_lr))
            elif sweep_lr is not None:
                name = sweep_label(label, sweep.index(sweep_lr))
            else:
                name = label
            by_label.setdefault(name, {})[task] = entry
    seeds = sorted(next(iter(runs.values()))["seeds"]) if runs else []
    table = FinalTable(task_names, seeds)
    for name, per_task in by_label.items():
        if set(per_task) != set(task_names):
            continue
        orders = {t: np.argsort(per_task[t]["seeds"]) for t in task_names}
        table.add(
            name,
            [np.asarray(per_task[t]["final"], dtype=np.float64)[orders[t]] for t in task_names],
            [np.asarray(per_task[t]["diverged"], dtype=bool)[orders[t]] for t in task_names],
        )
    return table, info


def summarize(records: Sequence[Mapping[str, Any]], config: BenchmarkConfig) -> dict[str, Any]:
    """Per-method aggregates, win rates, robustness and the targets from run records.

    The records become the core's `FinalTable` (`records_table`). The oracle of a
    task is `agents.benchmark.core.choose_oracle`: the grid's constant learning rate
    with the lowest mean log final objective over the task's seeds (an upper bound
    on what tuning one constant can do, at ``grid_size`` times the compute). Every
    ratio is a method's final objective over the oracle's on the same (task, seed).
    """
    table, tasks_info = records_table(records)
    task_names = table.tasks
    labels = list(dict.fromkeys(r["label"] for r in records if r["kind"] != "grid"))
    n_grid = max((len(info["grid_lrs"]) for info in tasks_info.values()), default=0)
    grid = {grid_label(i): table[grid_label(i)] for i in range(n_grid) if grid_label(i) in table}
    if not grid or len(grid) != n_grid:
        raise ConfigError(
            "every task needs the same best-of-grid records; the oracle needs them, got grids "
            f"{ {t: info['grid_lrs'] for t, info in tasks_info.items()} }"
        )
    chosen, oracle = choose_oracle(grid)
    for i, task in enumerate(task_names):
        info = tasks_info[task]
        lrs = info["grid_lrs"]
        best = lrs[int(chosen[i].removeprefix("grid#"))]
        info.update(
            oracle_lr=best,
            oracle_at_grid_edge=best in (lrs[0], lrs[-1]),
            grid_mean_log_final={
                f"{lr:.6g}": mean_log(table[grid_label(j)][i]) for j, lr in enumerate(lrs)
            },
        )

    # The oracle also appears as a method row (ratio 1 by construction).
    table.add("best_of_grid", oracle)
    labels.append("best_of_grid")

    per_method: dict[str, Any] = {}
    policy_table = table["policy"]
    for label in labels:
        if label not in table:
            continue
        final, diverged = table[label], table.diverged[label]
        ratio = final / oracle
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
            wins = strict_wins(policy_table, final)
            entry["win_rate_policy_vs"] = float(wins.mean())
            entry["win_rate_policy_vs_ci"] = list(
                bootstrap_ci(wins, np.mean, config.n_bootstrap, config.bootstrap_seed)
            )
            entry["win_rate_policy_vs_per_task"] = {
                t: float(w.mean()) for t, w in zip(task_names, wins)
            }
            counts = strict_win_tie_loss(policy_table, final)
            entry.update(
                wins_policy_vs=counts["wins"],
                ties_policy_vs=counts["ties"],
                losses_policy_vs=counts["losses"],
            )
        per_method[label] = entry

    # Robustness sweep: every (task, sweep lr, seed) run of a method vs the oracle on that (task, seed).
    n_sweep = max((len(info["sweep_lrs"]) for info in tasks_info.values()), default=0)
    for label, entry in per_method.items():
        sweeps = [sweep_label(label, j) for j in range(n_sweep)]
        present = {str(j): name for j, name in enumerate(sweeps) if name in table}
        if not present:
            continue
        within = {j: within_factor(table[name], oracle, config.robustness_factor)
                  for j, name in present.items()}  # fmt: skip
        entry["robustness"] = float(np.mean(np.stack(list(within.values()))))
        entry["robustness_by_sweep_index"] = {j: float(np.mean(w)) for j, w in within.items()}
        entry["sweep_divergence_rate"] = float(
            np.mean(np.stack([table.diverged[name] for name in present.values()]))
        )

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
        met = value is not None and meets(value, threshold, op)
        status = "N/A" if value is None else "MET" if met else "NOT MET"
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
