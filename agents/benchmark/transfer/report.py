"""Files and printout of a transfer result: ``results.json``, ``results.md``, PNG figures.

Every file goes through `agents.common.files` (temporary name, then moved into
place), so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TextIO

from agents.common.files import atomic_savefig

SUMMARY_FIGURES = ("win_tie_loss.png", "iqm_ratios.png", "robustness.png")
CURVE_LABELS = (
    "policy", "constant", "cosine_warmup", "warmup_stable_decay", "plateau",
    "hypergradient", "schedule_free", "prodigy",
)  # fmt: skip
"""Methods drawn in the per-task curve figures (the first seed of each task)."""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown_report(result: dict[str, Any]) -> str:
    """The tables of ``results.md`` (also what the CLI prints, up to the figures)."""
    summary, config = result["summary"], result["config"]
    lines = [
        f"# Transfer evaluation: split `{config['split']}`, policy `{result['policy']['ref']}`",
        "",
        f"{len(result['tasks'])} tasks x {len(result['seeds'])} seeds = {summary['n_pairs']} "
        f"pairs; wall time {result.get('wall_s', float('nan')):.0f} s (runs, cached ones "
        f"included: {result.get('run_s', float('nan')):.0f} s summed). Objective: final "
        "validation loss (diverged runs: 100x the first validation loss; floored at 1e-3, "
        "where float32 cross-entropy saturates). Win = policy "
        "strictly lower; tie = equal within a relative 1e-9 (not counted as half a win).",
        "",
        "## Policy vs each baseline",
        "",
        "| Baseline | Compute | Wins | Ties | Losses | Strict win rate | IQM policy/baseline [95% CI] | Median ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary["vs"].items():
        low, high = row["iqm_ratio_ci"]
        lines.append(
            f"| {name} | {row['compute_multiple']}x | {row['wins']} | {row['ties']} | "
            f"{row['losses']} | {row['win_rate']:.2f} | {row['iqm_ratio']:.3f} "
            f"[{low:.3f}, {high:.3f}] | {row['median_ratio']:.3f} |"
        )
    lines += [
        "",
        "Ratios < 1 favour the policy. Median ratio of each method to the oracle: "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary["median_ratio_to_oracle"].items()),
        "",
        "## Per task, worst first (policy median / constant median)",
        "",
        "| Task | Optimizer | User's start | Policy / constant | Policy / oracle | Policy median | Constant median | Policy diverged |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary["per_task"]:
        lines.append(
            f"| {row['task']} | {row['optimizer']} | {row['start_regime']} | "
            f"{row['ratio_to_constant']:.3f} | {row['ratio_to_oracle']:.3f} | "
            f"{_fmt(row['policy_median'], 4)} | {_fmt(row['constant_median'], 4)} | "
            f"{row['policy_diverged']}/{len(result['seeds'])} |"
        )
    robustness = summary["robustness"]
    multipliers = list(robustness["policy"]["by_multiplier"])
    lines += [
        "",
        f"## Robustness: runs within {config['robustness_factor']}x of the oracle, by start-rate multiple",
        "",
        "| Method | " + " | ".join(f"x{m}" for m in multipliers) + " | Overall |",
        "|---|" + "---:|" * (len(multipliers) + 1),
    ]
    for method, row in robustness.items():
        cells = " | ".join(
            f"{100 * row['by_multiplier'][m]:.0f}%" if m in row["by_multiplier"] else "–"
            for m in multipliers
        )
        lines.append(f"| {method} | {cells} | {100 * row['overall']:.0f}% |")
    lines += ["", "## Targets (printed, not asserted)", "", format_targets(summary), ""]
    return "\n".join(lines)


def format_targets(summary: dict[str, Any]) -> str:
    return "\n".join(
        f"- {t['name']}: {t['value']:.3f} (target {t['comparison']} {t['threshold']}) — **{t['status']}**"
        for t in summary["targets"]
    )


def print_summary(result: dict[str, Any], stream: TextIO) -> None:
    print(markdown_report(result), file=stream)
    if "files" in result:
        print(
            f"wrote {len(result['files'])} files to {Path(result['files']['results.json']).parent}",
            file=stream,
        )


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, results.md, the summary figures and one curve figure per task
    (`agents.benchmark.report_files.write_report_files`)."""
    from agents.benchmark.report_files import write_report_files

    def figures(out: Path) -> dict[str, Path]:
        import matplotlib

        matplotlib.use("Agg")
        summary = result["summary"]
        files = {
            "win_tie_loss.png": _plot_win_tie_loss(summary, out / "win_tie_loss.png"),
            "iqm_ratios.png": _plot_iqm_ratios(summary, out / "iqm_ratios.png"),
            "robustness.png": _plot_robustness(summary, out / "robustness.png"),
        }
        for task in result["tasks"]:
            name = f"curves_{task['name']}.png"
            files[name] = _plot_task_curves(task, result["curves"][task["name"]], out / name)
        return files

    markdown = markdown_report(result) + _figure_links(result)
    return write_report_files(out_dir, result, markdown, figures)


def _figure_links(result: dict[str, Any]) -> str:
    names = [*SUMMARY_FIGURES, *(f"curves_{t['name']}.png" for t in result["tasks"])]
    return "\n## Figures\n\n" + "\n".join(f"![{n}]({n})" for n in names) + "\n"


def _plot_win_tie_loss(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = list(summary["vs"])
    rows = [summary["vs"][n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    left = [0.0] * len(names)
    for key, color in (("wins", "tab:green"), ("ties", "tab:gray"), ("losses", "tab:red")):
        widths = [r[key] / r["n"] for r in rows]
        ax.barh(names, widths, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, widths)]
    ax.axvline(0.8, color="k", ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of (task, seed) pairs: policy wins / ties / loses")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def _plot_iqm_ratios(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = list(summary["vs"])
    values = [summary["vs"][n]["iqm_ratio"] for n in names]
    errors = [
        [v - summary["vs"][n]["iqm_ratio_ci"][0] for n, v in zip(names, values)],
        [summary["vs"][n]["iqm_ratio_ci"][1] - v for n, v in zip(names, values)],
    ]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.errorbar(values, names, xerr=errors, fmt="o", capsize=3)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("IQM of policy / baseline final validation loss (95% stratified bootstrap CI)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def _plot_robustness(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method, row in summary["robustness"].items():
        xs = [float(m) for m in row["by_multiplier"]]
        ax.plot(
            xs,
            list(row["by_multiplier"].values()),
            "o-",
            label=f"{method} ({100 * row['overall']:.0f}%)",
        )
    ax.axhline(0.8, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("start rate / user's start rate")
    ax.set_ylabel("runs within 1.25x of oracle")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def _plot_task_curves(task: dict[str, Any], curves: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for label in CURVE_LABELS:
        if label not in curves:
            continue
        run = curves[label]
        style = {"lw": 2.2, "color": "k"} if label == "policy" else {"lw": 1.1}
        steps = [s for s, v in zip(run["val_steps"], run["val_losses"]) if v is not None]
        values = [v for v in run["val_losses"] if v is not None]
        loss_ax.plot(
            steps, values, label=label + (" (diverged)" if run["diverged"] else ""), **style
        )
        lr_ax.plot(run["lr_steps"], run["lrs"], label=label, **style)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("update")
    loss_ax.set_ylabel("validation loss")
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("update")
    lr_ax.set_ylabel("learning rate (Prodigy: d x lr)")
    loss_ax.legend(fontsize=7)
    fig.suptitle(
        f"{task['name']} ({task['optimizer']}, user's start {task['start_lr']:g}: "
        f"{task['start_regime']}), first seed"
    )
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path
