"""Recipe ablation at equal wall-clock: train each row with several seeds, score every
bundle on the transfer suite's ``validation`` split, write one table.

A row is the ``baseline`` preset (the recipe before issue 26) plus overrides, each row adding one lever to the row
before it (`ROWS`), so the table reads as "today's recipe, then each lever added".
Every run gets the same wall-clock budget (`TrainConfig.max_wall_time_s`, stopping at
the PPO update nearest to it): a lever that makes decisions dearer pays for it in fewer
decisions. Runs are separate
``hpo-rl train`` processes, ``workers`` at a time, each on one torch thread; a killed
ablation resumes (finished bundles are kept, killed runs continue from their last
checkpoint, finished transfer runs come from the transfer cache).

Choose on validation only: this never touches the ``test`` split.

Example::

    hpo-rl ablation --minutes 6 --seeds 1 2 3 --workers 2
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.benchmark.stats import strict_win_tie_loss
from agents.benchmark.transfer.summary import CONSTANT, POLICY, final_table
from agents.common.files import atomic_write_text
from agents.common.platform import describe_platform, machine_fingerprint
from agents.policy.ensemble import is_ensemble, member_paths
from agents.train.checkpoints import CONFIG_FILE, checkpoint_dirs
from hpo_env.errors import ConfigError, unknown_name_error


@dataclasses.dataclass(frozen=True)
class Row:
    """One recipe: the ``baseline`` preset with ``overrides`` (TrainConfig fields)."""

    name: str
    lever: str
    overrides: tuple[tuple[str, Any], ...]


_RELATIVE = (("feature_spec_version", 3),)
_GROUPS = (
    *_RELATIVE,
    ("task_groups", 8),
    ("distribution", "tasks.recipe_distribution:fast_recipe_distribution"),
)
_PAIRED = (*_GROUPS, ("paired_reward", True))
_FUNCTIONAL = tuple(
    ("distribution", "tasks.recipe_distribution:functional_recipe_distribution")
    if name == "distribution"
    else (name, value)
    for name, value in _PAIRED
)

ROWS: tuple[Row, ...] = (
    Row("baseline", "the recipe before issue 26 (`--preset baseline`)", ()),
    Row("relative", "+ run-relative observation (feature version 3)", _RELATIVE),
    Row("groups", "+ 8 task groups, a third of tasks started near the usual rate", _GROUPS),
    Row("paired", "+ paired (twin) reward", _PAIRED),
    Row(
        "functional",
        "+ `nn.Module` families: residual MLPs and GroupNorm CNNs, 20% of draws",
        _FUNCTIONAL,
    ),
)
"""The ablation's rows, each adding one lever to the one before."""

BASELINES = ("constant", "cosine_warmup", "schedule_free", "prodigy")
"""Baselines whose strict win rates the table shows (all are run and cached)."""


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """Settings of `run_ablation` (CLI: ``hpo-rl ablation``)."""

    rows: tuple[str, ...] = tuple(r.name for r in ROWS)
    """Names of `ROWS` to train (in this order)."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """Training seeds per row."""
    minutes: float = 6.0
    """Wall-clock budget of every training run, in minutes."""
    total_timesteps: int = 100_000_000
    """Decisions cap of every run: far above what the budget allows, so that the
    wall-clock budget is what stops every row (the ``baseline`` preset's own 102,400
    decisions take ~5.5 min on one idle AMD EPYC core)."""
    workers: int = 2
    """Training runs (and transfer runs) at a time, one process each."""
    transfer_seeds: int = 3
    """Run seeds per validation task."""
    sweep: tuple[float, ...] = (0.1, 1.0, 10.0)
    """Start-rate multiples of the robustness sweep (1.0 is the user's start)."""
    preset: str = "baseline"
    """The preset every row starts from (tests use ``smoke``)."""
    quick: bool = False
    """Score on the transfer suite's quick validation (two tasks, 150 updates): a smoke test."""
    out_dir: str = "runs/ablation"
    """Where runs, the transfer cache and ``ablation.md``/``ablation.json`` go."""
    ensembles: bool = True
    """Also score, per row, the ensemble of its seeds' bundles (`agents.policy.ensemble`)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        known = [r.name for r in ROWS]
        for name in self.rows:
            if name not in known:
                raise unknown_name_error("ablation row", name, known)
        if not self.rows or not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"need rows and distinct seeds, got {self.rows=} {self.seeds=}")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"training seeds must be >= 0, got {self.seeds!r}")
        if not self.minutes > 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes!r}")
        if self.workers < 1 or self.transfer_seeds < 1 or self.total_timesteps < 1:
            raise ConfigError(f"workers and transfer_seeds must be >= 1, got {self}")
        from agents.train.config import PRESETS

        if self.preset not in PRESETS:
            raise unknown_name_error("preset", self.preset, list(PRESETS))
        if 1.0 not in self.sweep:
            raise ConfigError(f"sweep must contain 1.0 (the user's start), got {self.sweep!r}")


def reproduce_command(config: AblationConfig) -> str:
    """The ``hpo-rl ablation`` command that trains and scores what ``config`` did (rows
    named unless they are all of them, so a partial table never claims the full one)."""
    parts = ["hpo-rl ablation"]
    if tuple(config.rows) != tuple(r.name for r in ROWS):
        parts.append("--rows " + " ".join(config.rows))
    parts.append(f"--minutes {config.minutes:g}")
    parts.append("--seeds " + " ".join(str(s) for s in config.seeds))
    parts.append(f"--workers {config.workers}")
    return " ".join(parts)


def row_by_name(name: str) -> Row:
    for row in ROWS:
        if row.name == name:
            return row
    raise unknown_name_error("ablation row", name, [r.name for r in ROWS])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_command(
    row: Row,
    seed: int,
    run_dir: Path,
    minutes: float,
    preset: str = "baseline",
    total_timesteps: int = 100_000_000,
) -> list[str]:
    """The ``hpo-rl train`` command of one (row, seed): ``preset`` plus the row's overrides
    (``--resume`` where the run has a checkpoint)."""
    command = [sys.executable, "-m", "agents", "train", "--preset", preset]
    if (run_dir / CONFIG_FILE).is_file() and checkpoint_dirs(run_dir):
        return [sys.executable, "-m", "agents", "train", "--resume", str(run_dir)]
    for name, value in row.overrides:
        command += [_flag(name), str(value).lower() if isinstance(value, bool) else str(value)]
    command += [
        "--seed", str(seed),
        "--max-wall-time-s", str(minutes * 60.0),
        "--total-timesteps", str(total_timesteps),
        "--eval-every", "0",
        "--out-dir", str(run_dir),
        "--wandb-mode", "disabled",
        "--progress-bar", "false",
    ]  # fmt: skip
    return command


def _run_dir(out: Path, name: str, seed: int) -> Path:
    return out / name / f"seed{seed}"


def _bundle(run_dir: Path) -> Path | None:
    bundle = run_dir / "bundle"
    return bundle if (bundle / "metadata.json").is_file() else None


def train_all(config: AblationConfig) -> dict[tuple[str, int], Path]:
    """Train every (row, seed) that has no bundle yet, ``workers`` at a time."""
    from tqdm.auto import tqdm

    out = Path(config.out_dir)
    runs = [(name, seed) for seed in config.seeds for name in config.rows]
    todo = [(n, s) for n, s in runs if _bundle(_run_dir(out, n, s)) is None]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="ablation: training",
               unit="run", disable=not config.progress, file=sys.stderr)  # fmt: skip
    running: list[tuple[tuple[str, int], subprocess.Popen[bytes], Any]] = []
    try:
        while todo or running:
            while todo and len(running) < config.workers:
                name, seed = todo.pop(0)
                run_dir = _run_dir(out, name, seed)
                run_dir.mkdir(parents=True, exist_ok=True)
                log = (run_dir / "train.log").open("ab")
                command = train_command(
                    row_by_name(name),
                    seed,
                    run_dir,
                    config.minutes,
                    config.preset,
                    config.total_timesteps,
                )
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                running.append(((name, seed), process, log))
            time.sleep(1.0)
            for entry in list(running):
                (name, seed), process, log = entry
                if process.poll() is None:
                    continue
                running.remove(entry)
                log.close()
                if process.returncode != 0:
                    raise RuntimeError(
                        f"training {name} seed {seed} failed (exit {process.returncode}); "
                        f"see {_run_dir(out, name, seed) / 'train.log'}"
                    )
                bar.update(1)
    finally:
        for _, process, log in running:  # Ctrl-C: the runs resume from their checkpoints
            process.terminate()
            log.close()
        bar.close()
    return {(n, s): _run_dir(out, n, s) / "bundle" for n, s in runs}


def score_bundle(
    bundle: Path, config: AblationConfig, members: Sequence[Path] = ()
) -> dict[str, Any]:
    """The transfer suite's validation split for one bundle (runs cached in the shared
    folder); an ensemble's training figures are its members' sums and means (``members``:
    their run bundles; default: the ensemble bundle's own member folders)."""
    from agents.benchmark.transfer.protocol import TransferConfig, run_transfer

    transfer = TransferConfig(
        split="validation",
        policy=str(bundle),
        n_seeds=config.transfer_seeds,
        sweep_multipliers=tuple(config.sweep),
        out_dir=str(Path(config.out_dir) / "transfer-validation"),
        progress=config.progress,
        workers=config.workers,
        quick=config.quick,
    )
    result = run_transfer(transfer, stream=io.StringIO())  # the table is printed, not each report
    summary = result["summary"]
    trainings = [
        json.loads((b / "metadata.json").read_text())["training"]
        for b in (members or (member_paths(bundle) if is_ensemble(bundle) else [bundle]))
    ]
    training = {
        "num_timesteps": sum(t["num_timesteps"] for t in trainings),
        "steps_per_s_last_session": _mean([t["steps_per_s_last_session"] or 0 for t in trainings]),
    }
    per_optimizer = _wins_by_optimizer(result, "cosine_warmup")
    return {
        "win_rate": {b: summary["vs"][b]["win_rate"] for b in BASELINES},
        "iqm_vs_constant": summary["vs"][CONSTANT]["iqm_ratio"],
        "worst_task_ratio": summary["per_task"][0]["ratio_to_constant"],
        "robustness": summary["robustness"][POLICY]["overall"],
        "win_rate_vs_cosine_by_optimizer": per_optimizer,
        "decisions": int(training["num_timesteps"]),
        "decisions_per_s": training.get("steps_per_s_last_session"),
        "n_pairs": summary["n_pairs"],
    }


def _wins_by_optimizer(result: dict[str, Any], baseline: str) -> dict[str, float]:
    table = final_table(result)
    optimizers = {t["name"]: t["optimizer"] for t in result["tasks"]}
    policy, other = table[POLICY], table[baseline]
    out = {}
    for optimizer in sorted(set(optimizers.values())):
        rows = [i for i, task in enumerate(table.tasks) if optimizers[task] == optimizer]
        counts = strict_win_tie_loss(policy[rows], other[rows])
        out[optimizer] = counts["wins"] / counts["n"]
    return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def write_table(
    scores: dict[str, dict[int, dict[str, Any]]],
    config: AblationConfig,
    ensembles: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The markdown table: one line per row, per-seed values then their mean; then a line
    per ensemble of a row's seeds (its decisions are its members' together)."""
    header = (
        "| row | lever | seeds | decisions (mean) | vs constant | vs cosine w/ warmup | "
        "vs schedule-free | vs Prodigy | IQM policy/constant | worst task / constant | "
        "robustness (x" + ", x".join(f"{m:g}" for m in config.sweep) + ") |"
    )
    lines = [header, "|" + "---|" * 11]
    for name in config.rows:
        by_seed = scores[name]
        seeds = sorted(by_seed)

        def cell(get: Any, fmt: str = "{:.2f}", by_seed: Any = by_seed, seeds: Any = seeds) -> str:
            values = [get(by_seed[s]) for s in seeds]
            each = " / ".join(fmt.format(v) for v in values)
            return f"{each} (**{fmt.format(_mean(values))}**)"

        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    row_by_name(name).lever,
                    " ".join(str(s) for s in seeds),
                    f"{_mean([by_seed[s]['decisions'] for s in seeds]):,.0f}",
                    *(cell(lambda r, b=b: r["win_rate"][b]) for b in BASELINES),
                    cell(lambda r: r["iqm_vs_constant"], "{:.3f}"),
                    cell(lambda r: r["worst_task_ratio"], "{:.2f}"),
                    cell(lambda r: r["robustness"], "{:.2f}"),
                ]
            )
            + " |"
        )
    for name, score in (ensembles or {}).items():
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{name} ensemble",
                    f"mean action of the {len(config.seeds)} seeds above",
                    " ".join(str(s) for s in config.seeds),
                    f"{score['decisions']:,.0f}",
                    *(f"{score['win_rate'][b]:.2f}" for b in BASELINES),
                    f"{score['iqm_vs_constant']:.3f}",
                    f"{score['worst_task_ratio']:.2f}",
                    f"{score['robustness']:.2f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Train, score and tabulate; writes ``ablation.json`` and ``ablation.md``."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundles = train_all(config)
    scores: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in config.rows}
    for (name, seed), bundle in bundles.items():
        scores[name][seed] = score_bundle(bundle, config)
    ensembles: dict[str, dict[str, Any]] = {}
    if config.ensembles and len(config.seeds) > 1:
        from agents.policy.ensemble import write_ensemble

        for name in config.rows:
            path = write_ensemble(
                out / name / "ensemble", [bundles[(name, s)] for s in config.seeds]
            )
            ensembles[name] = score_bundle(
                path, config, members=[bundles[(name, s)] for s in config.seeds]
            )
    table = write_table(scores, config, ensembles)
    fingerprint = machine_fingerprint()
    platform = describe_platform(fingerprint)
    report = {
        "config": dataclasses.asdict(config),
        "platform": fingerprint,
        "rows": {name: {str(s): v for s, v in by_seed.items()} for name, by_seed in scores.items()},
        "ensembles": ensembles,
    }
    atomic_write_text(out / "ablation.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    footer = (
        f"\n{len(config.seeds)} training seeds per row, {config.minutes:g} min of meta-training "
        f"each, scored on the transfer suite's validation split ({config.transfer_seeds} seeds "
        f"per task; strict win rates at the user's start rate). Platform: {platform}. "
        f"Reproduce: `{reproduce_command(config)}`.\n"
    )
    atomic_write_text(out / "ablation.md", table + footer)
    return {"table": table + footer, "report": report}
