"""Aggregate a benchmark's run records: per-method ratios to the oracle, win rates with CIs, robustness, and the targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.benchmark.config import BenchmarkConfig
from agents.benchmark.core import choose_oracle, mean_log
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

    The oracle of a task is `agents.benchmark.core.choose_oracle`: the grid's
    constant learning rate with the lowest mean log final objective over the
    task's seeds (an upper bound on what tuning one constant can do, at
    ``grid_size`` times the compute). Every ratio is a
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
        scores = {lr: mean_log(v["final"]) for lr, v in grid.items()}
        (best,), rows = choose_oracle({lr: v["final"][None, :] for lr, v in grid.items()})
        oracle[task] = rows[0]
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
    for label, entry in per_method.items():
        by_lr: dict[str, list[float]] = {}
        within_all, diverged_all = [], []
        for task in task_names:
            for lr in tasks_info[task]["sweep_lrs"]:
                rec = finals(task, label, lr)
                if rec is None:
                    continue
                within = within_factor(rec["final"], oracle[task], config.robustness_factor)
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
