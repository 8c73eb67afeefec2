"""Tables and figures of a benchmark result (`agents.benchmark.protocol.run_benchmark`).

`write_report(result, out_dir)` writes ``results.json``, ``results.md`` and
the PNG figures through the one report writer (`agents.benchmark.report_files`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.common.files import atomic_savefig

FIGURES = ("lr_schedules.png", "loss_curves.png", "win_rates.png", "robustness.png")

_BASELINE_ORDER = (
    "constant_default",
    "cosine",
    "step_decay",
    "plateau",
    "hypergradient",
    "best_of_grid",
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def method_order(methods: Mapping[str, Any]) -> list[str]:
    """The policy first, then the built-in baselines, then any added method, then the oracle."""
    names = [m for m in methods if m not in ("policy", "best_of_grid")]
    known = [m for m in _BASELINE_ORDER if m in names]
    extra = [m for m in names if m not in known]
    tail = ["best_of_grid"] if "best_of_grid" in methods else []
    return (["policy"] if "policy" in methods else []) + known + extra + tail


def format_targets(summary: Mapping[str, Any]) -> str:
    """One line per target: MET / NOT MET / N/A, the measured value and the threshold."""
    lines = []
    for target in summary["targets"]:
        value = target["value"]
        shown = "–" if value is None else f"{value:.3f}"
        lines.append(f"[{target['status']:>7}] {target['description']} (measured {shown})")
    return "\n".join(lines)


def markdown_report(result: Mapping[str, Any]) -> str:
    """The Markdown summary: headline table, targets, per-task win rates, protocol."""
    summary, config = result["summary"], result["config"]
    methods = summary["methods"]
    factor = summary["robustness_factor"]
    out = ["# Held-out benchmark of the tuning policy", ""]
    if config.get("quick"):
        out += [
            "> **Quick mode (smoke test)**: few tasks, few seeds, a short grid. Do not quote these numbers.",
            "",
        ]
    out += [
        f"Policy: `{result['policy']['ref']}` (controls {', '.join(result['policy']['hparams'])}). "
        f"{len(summary['task_names'])} held-out tasks x {len(result['seeds'])} fresh seeds "
        f"(>= {min(result['seeds'])}, disjoint from meta-training). Wall time {result['wall_s']:.0f} s.",
        "",
        "Ratio = final validation objective / the best-of-grid oracle's on the same task and seed "
        "(lower is better; IQM over all (task, seed) pairs, 95% stratified-bootstrap CI). "
        "Win rate = fraction of pairs where the policy ends strictly lower; W / T / L = strict "
        "wins, ties (equal within a relative 1e-9) and losses, counted apart (a tie is not a win). "
        f"Robust = fraction of robustness-sweep runs ending within {factor}x of the oracle.",
        "",
        "| Method | Compute | IQM ratio [95% CI] | Median ratio | Policy wins vs it [95% CI] "
        "| W / T / L | Diverged | Robust | Diverged (sweep) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in method_order(methods):
        m = methods[name]
        lo, hi = m["iqm_ratio_ci"]
        win, counts = "–", "–"
        if "win_rate_policy_vs" in m:
            wlo, whi = m["win_rate_policy_vs_ci"]
            win = f"{_pct(m['win_rate_policy_vs'])} [{_pct(wlo)}, {_pct(whi)}]"
        if "ties_policy_vs" in m:
            counts = f"{m['wins_policy_vs']} / {m['ties_policy_vs']} / {m['losses_policy_vs']}"
        out.append(
            f"| {name} | {_fmt(m.get('compute_multiple'))}x | {m['iqm_ratio']:.3f} [{lo:.3f}, {hi:.3f}] "
            f"| {m['median_ratio']:.3f} | {win} | {counts} | {_pct(m['divergence_rate'])} "
            f"| {_pct(m.get('robustness'))} | {_pct(m.get('sweep_divergence_rate'))} |"
        )
    out += ["", "## Targets", "", "```", format_targets(summary), "```", ""]

    out += ["## Policy win rate per task", ""]
    baselines = [n for n in method_order(methods) if n != "policy"]
    out.append("| Task | Family | Oracle lr | " + " | ".join(baselines) + " |")
    out.append("|---|---|---:|" + "---:|" * len(baselines))
    edge = []
    for task in summary["task_names"]:
        info = summary["tasks"][task]
        cells = [
            _pct(methods[b].get("win_rate_policy_vs_per_task", {}).get(task)) for b in baselines
        ]
        mark = " (edge)" if info.get("oracle_at_grid_edge") else ""
        edge += [task] if mark else []
        out.append(
            f"| {task} | {info['family']} | {info['oracle_lr']:.3g}{mark} | "
            + " | ".join(cells)
            + " |"
        )
    if edge:
        out += [
            "",
            f"Oracle at the edge of its grid on {', '.join(edge)}: the best constant may lie "
            "outside the grid, so ratios to it flatter every method there (widen `grid_decades`).",
        ]

    if any("robustness_by_sweep_index" in m for m in methods.values()):
        sweep = summary["sweep_lrs"]
        out += [
            "",
            f"## Robustness: fraction within {factor}x of the oracle, by initial learning rate",
            "",
        ]
        out.append("| Method | " + " | ".join(f"start {lr:g}" for lr in sorted(sweep)) + " |")
        out.append("|---|" + "---:|" * len(sweep))
        for name in method_order(methods):
            by = methods[name].get("robustness_by_sweep_index")
            if by:
                out.append(
                    f"| {name} | "
                    + " | ".join(_pct(by.get(str(i))) for i in range(len(sweep)))
                    + " |"
                )
        out += [
            "",
            "Initial learning rates are per-task scaled (see `agents.benchmark.work.sweep_lrs_for`).",
        ]

    out += [
        "",
        "## Protocol",
        "",
        f"- Tasks: {', '.join(summary['task_names'])}.",
        f"- Seeds: {result['seeds']} (`agents.benchmark.config.eval_seeds`; meta-training draws seeds below 2**31 - 1).",
        "- Every method starts from the task's default hyperparameters (`task.default_hparams()`); "
        "the policy and the schedules adapt the learning rate from there.",
        f"- Oracle: the best of {config['grid_size']} constant learning rates "
        f"(default x 10^[{config['grid_decades'][0]}, {config['grid_decades'][1]}]), chosen per task on the "
        "mean log final validation objective over the seeds it is scored on.",
        "- A diverged run's final objective is its first validation loss times the divergence factor "
        "(finite, ranked last).",
        f"- Validation cadence seen by controllers: every {config['val_every']} decision(s).",
        "",
    ]
    for name in method_order(methods):
        if methods[name].get("description"):
            out.append(f"- `{name}`: {methods[name]['description']}.")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- figures


def _main_records(records: Sequence[Mapping[str, Any]], task: str) -> dict[str, Mapping[str, Any]]:
    return {
        r["label"]: r
        for r in records
        if r["task"] == task and r["sweep_lr"] is None and r["kind"] != "grid"
    }


def _oracle_record(
    records: Sequence[Mapping[str, Any]], task: str, lr: float
) -> Mapping[str, Any] | None:
    for r in records:
        if (
            r["task"] == task
            and r["kind"] == "grid"
            and r["grid_lr"] is not None
            and math.isclose(r["grid_lr"], lr)
        ):
            return r
    return None


def _save(fig: Any, path: Path) -> None:
    atomic_savefig(fig, path, dpi=110, bbox_inches="tight")


def _as_float(values: Sequence[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


MAX_PANEL_COLUMNS = 4
"""Task panels per row of the schedule and loss figures."""


def make_figures(
    result: Mapping[str, Any], out_dir: str | os.PathLike[str], n_tasks: int | None = None
) -> list[Path]:
    """Write `FIGURES` into ``out_dir``; returns their paths.

    Args:
        result: `run_benchmark` output.
        out_dir: Folder for the PNGs.
        n_tasks: Draw the schedule and loss panels of the first ``n_tasks`` tasks
            only (the figure's title then says which subset); None draws every task.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    summary, records = result["summary"], result["records"]
    methods = summary["methods"]
    all_tasks = list(summary["task_names"])
    tasks = all_tasks if n_tasks is None else all_tasks[:n_tasks]
    scope = (
        f"all {len(all_tasks)} tasks"
        if len(tasks) == len(all_tasks)
        else f"{len(tasks)} of {len(all_tasks)} tasks (the first in results.json)"
    )
    order = [m for m in method_order(methods) if m != "best_of_grid"]
    paths = []
    n_cols = max(1, min(MAX_PANEL_COLUMNS, len(tasks)))
    n_rows = max(1, math.ceil(len(tasks) / n_cols))

    for filename, key, ylabel in (
        ("lr_schedules.png", "lr", "learning rate"),
        ("loss_curves.png", "val", "validation objective"),
    ):
        fig, axes = plt.subplots(
            n_rows, n_cols, figsize=(4.5 * n_cols, 3.4 * n_rows + 0.6), squeeze=False
        )
        fig.suptitle(f"{ylabel} per decision, first seed: {scope}", fontsize=11)
        for ax in axes.flat[len(tasks) :]:
            ax.set_visible(False)
        for ax, task in zip(axes.flat, tasks):
            runs = dict(_main_records(records, task))
            oracle = _oracle_record(records, task, summary["tasks"][task]["oracle_lr"])
            if oracle is not None:
                runs["best_of_grid"] = oracle
            for label in [*order, "best_of_grid"]:
                rec = runs.get(label)
                if rec is None:
                    continue
                values = rec["hparams"].get("learning_rate") if key == "lr" else rec["val_curve"]
                if not values:
                    continue
                style: dict[str, Any] = (
                    {"linewidth": 2.5, "color": "black"}
                    if label == "policy"
                    else {"linewidth": 1.2}
                )
                if label == "best_of_grid":
                    style = {"linestyle": "--", "color": "grey"}
                ax.plot(range(1, len(values[0]) + 1), _as_float(values[0]), label=label, **style)
            ax.set_yscale("log")
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("decision")
            ax.set_ylabel(ylabel)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        _save(fig, out / filename)
        plt.close(fig)
        paths.append(out / filename)

    baselines = [m for m in method_order(methods) if "win_rate_policy_vs" in methods[m]]
    fig, ax = plt.subplots(figsize=(1.2 * max(len(baselines), 3) + 2, 4))
    rates = [methods[b]["win_rate_policy_vs"] for b in baselines]
    err = [
        [r - methods[b]["win_rate_policy_vs_ci"][0] for b, r in zip(baselines, rates)],
        [methods[b]["win_rate_policy_vs_ci"][1] - r for b, r in zip(baselines, rates)],
    ]
    ax.bar(baselines, rates, yerr=err, capsize=4, color="tab:blue")
    ax.axhline(0.5, color="grey", linestyle=":", label="even")
    ax.axhline(0.8, color="tab:green", linestyle="--", label="target vs constant (80%)")
    ax.axhline(0.6, color="tab:orange", linestyle="--", label="target vs cosine (60%)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("policy strict win rate (ties are not wins)")
    ax.set_title("Policy vs each baseline on held-out (task, seed) pairs")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    _save(fig, out / "win_rates.png")
    plt.close(fig)
    paths.append(out / "win_rates.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    sweep = sorted(summary["sweep_lrs"])
    for label in order:
        by = methods[label].get("robustness_by_sweep_index")
        if not by:
            continue
        ys = [by.get(str(i), float("nan")) for i in range(len(sweep))]
        line: dict[str, Any] = {"linewidth": 2.5, "color": "black"} if label == "policy" else {}
        ax.plot(sweep, ys, marker="o", label=label, **line)
    ax.axhline(0.8, color="tab:green", linestyle="--", label="target (80%)")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("initial learning rate (per-task scaled)")
    ax.set_ylabel(f"fraction within {summary['robustness_factor']}x of oracle")
    ax.set_title("Robustness to the initial learning rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "robustness.png")
    plt.close(fig)
    paths.append(out / "robustness.png")
    return paths


def write_report(result: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and the figures into ``out_dir``
    (`agents.benchmark.report_files.write_report_files`).

    Returns:
        name -> path of every file written.
    """
    from agents.benchmark.report_files import write_report_files

    def figures(out: Path) -> dict[str, Path]:
        return {path.name: path for path in make_figures(result, out)}

    return write_report_files(out_dir, result, markdown_report(result), figures)
