"""``hpo-rl benchmark``: the tuning policy against strong baselines on held-out tasks.

Runs the protocol of `agents.benchmark` (held-out tasks, fresh seeds, every
baseline of `agents.benchmark.methods`, a best-of-grid oracle and the initial
learning-rate robustness sweep), writes ``results.json``, ``results.md`` and
PNG figures to ``--out``, prints the table and whether each target is MET or
NOT MET, and logs everything to Weights & Biases when asked.

Example::

    hpo-rl benchmark --quick --out runs/benchmark-quick
    hpo-rl benchmark --policy path/to/bundle --seeds 10 --backend ray
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.benchmark.config import FULL_BENCHMARK, QUICK_BENCHMARK, BenchmarkConfig
from agents.common.tracking import MODES as WANDB_MODES

COMMAND = "benchmark"
SUMMARY = "the policy vs baselines on held-out tasks and seeds (tables, figures, targets)"
DEFAULT_WANDB_MODE = "offline"
"""As ``train`` and ``schedule``: no account needed, ``wandb sync`` later."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help=SUMMARY,
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--policy",
        default="default",
        help="shipped bundle name or bundle directory (default: default)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test for CI: 2 tasks, 2 seeds, a short grid (minutes)",
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default: runs/benchmark[-quick])"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="run seeds per task (default: 5, quick: 2)"
    )
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="task names (default: every held-out task)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="baselines to run (default: constant_default cosine step_decay plateau hypergradient)",
    )
    parser.add_argument(
        "--pbt",
        choices=("auto", "on", "off"),
        default="auto",
        help="add the Population Based Training baseline (Ray Tune, 4x compute). "
        "auto: in --quick mode when the ray extra is installed (default: auto)",
    )
    parser.add_argument(
        "--val-every", type=int, default=None, help="validation cadence seen by controllers"
    )
    parser.add_argument(
        "--wandb-mode",
        choices=WANDB_MODES,
        default=DEFAULT_WANDB_MODE,
        help="Weights & Biases mode; offline needs no account (``wandb sync`` later) "
        f"(default: {DEFAULT_WANDB_MODE})",
    )
    parser.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="where work items run"
    )
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: a local Ray)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local processes running work items (--backend local); the results do not "
        "depend on it (default: 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if a target is NOT MET"
    )
    parser.set_defaults(func=run)


def wants_pbt(choice: str, quick: bool) -> bool:
    """PBT on demand, or by default in quick mode when Ray is installed (a full run
    with PBT costs one Ray Tune population per task and seed: opt in with --pbt on)."""
    if choice == "on":
        return True
    if choice == "off":
        return False
    return quick and importlib.util.find_spec("ray") is not None


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The preset (quick or full) with the command line's overrides."""
    base = QUICK_BENCHMARK if args.quick else FULL_BENCHMARK
    overrides: dict[str, Any] = {
        "backend": args.backend,
        "ray_address": args.ray_address,
        "workers": getattr(args, "workers", 1),
    }
    if args.seeds is not None:
        overrides["n_seeds"] = args.seeds
    if args.tasks:
        overrides["tasks"] = tuple(args.tasks)
    if args.val_every is not None:
        overrides["val_every"] = args.val_every
    return dataclasses.replace(base, **overrides)


def methods_from_args(args: argparse.Namespace) -> list[Any]:
    """The baselines named on the command line (the names map to objects here, at the edge)."""
    from agents.benchmark.methods import DEFAULT_METHODS, select_methods

    methods = (
        select_methods(args.methods, DEFAULT_METHODS) if args.methods else list(DEFAULT_METHODS)
    )
    if wants_pbt(args.pbt, args.quick):
        from agents.benchmark.pbt import pbt_method

        methods.append(pbt_method())
    return methods


def run(args: argparse.Namespace) -> int:
    from agents.common.extras import require_extras

    require_extras(
        "hpo-rl benchmark",
        {"sklearn": "train", "tqdm": "train", "stable_baselines3": "train", "matplotlib": "plot"},
    )
    config = config_from_args(args)
    out = Path(args.out or ("runs/benchmark-quick" if args.quick else "runs/benchmark"))
    result = run_and_report(
        config,
        policy=args.policy,
        out_dir=out,
        wandb_mode=args.wandb_mode,
        progress=not args.no_progress,
        methods=methods_from_args(args),
    )
    not_met = [t for t in result["summary"]["targets"] if t["status"] != "MET"]
    return 1 if args.strict and not_met else 0


def run_and_report(
    config: BenchmarkConfig,
    policy: Any = "default",
    out_dir: str | Path = "runs/benchmark",
    wandb_mode: str = DEFAULT_WANDB_MODE,
    tasks: Sequence[Any] | None = None,
    progress: bool = True,
    stream: Any = None,
    methods: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, write the report files, print the summary, log to W&B.

    Args:
        config: The protocol (`FULL_BENCHMARK`, `QUICK_BENCHMARK` or your own).
        policy: Bundle name or path, or a policy object.
        out_dir: Folder for results.json, results.md and the figures.
        wandb_mode: ``offline`` (default), ``online`` or ``disabled``.
        tasks: Task objects instead of ``config.tasks``.
        progress: Show a progress bar.
        stream: Where to print (default stdout).
        methods: Baselines as `agents.benchmark.methods.MethodSpec` objects (default: the
            protocol's `DEFAULT_METHODS`).

    Returns:
        The `run_benchmark` result, plus ``"files"``: name -> path written.
    """
    from agents.benchmark.protocol import run_benchmark
    from agents.benchmark.report import format_targets, markdown_report, write_report

    if wandb_mode not in WANDB_MODES:
        from hpo_env.errors import unknown_name_error

        raise unknown_name_error("wandb mode", wandb_mode, list(WANDB_MODES))
    stream = stream or sys.stdout
    from agents.benchmark.methods import DEFAULT_METHODS

    result = run_benchmark(
        config,
        policy=policy,
        tasks=tasks,
        progress=progress,
        methods=DEFAULT_METHODS if methods is None else methods,
    )
    files = write_report(result, out_dir)
    print(markdown_report(result).split("## Targets")[0].rstrip(), file=stream)
    print("\nTargets:", file=stream)
    print(format_targets(result["summary"]), file=stream)
    if wandb_mode != "disabled":
        log_to_wandb(result, files, out_dir, wandb_mode)
    # The result line comes last: nothing (wandb included) prints after it.
    print(
        f"\nwrote {', '.join(str(p) for p in files.values())} ({result['wall_s']:.0f} s)",
        file=stream,
    )
    result["files"] = {name: str(path) for name, path in files.items()}
    return result


def log_to_wandb(
    result: dict[str, Any], files: dict[str, Path], out_dir: str | Path, mode: str
) -> None:
    """Summary numbers, the method table, the figures, and results.json as an artifact."""
    from agents.common.tracking import Tracker

    summary = result["summary"]
    tracker = Tracker().start(
        {"benchmark": result["config"], "policy": result["policy"]["ref"]},
        mode=mode,
        project="hpo-rl",
        dir=str(out_dir),
        job_type="benchmark",
    )
    with tracker:
        flat: dict[str, Any] = {}
        rows = []
        for name, m in summary["methods"].items():
            flat[f"{name}/iqm_ratio"] = m["iqm_ratio"]
            flat[f"{name}/divergence_rate"] = m["divergence_rate"]
            if "win_rate_policy_vs" in m:
                flat[f"{name}/policy_win_rate"] = m["win_rate_policy_vs"]
            if "robustness" in m:
                flat[f"{name}/robustness"] = m["robustness"]
            rows.append(
                [
                    name,
                    m.get("compute_multiple"),
                    m["iqm_ratio"],
                    *m["iqm_ratio_ci"],
                    m["median_ratio"],
                    m.get("win_rate_policy_vs"),
                    m["divergence_rate"],
                    m.get("robustness"),
                ]
            )
        for target in summary["targets"]:
            flat[f"target/{target['name']}"] = target["value"]
            flat[f"target/{target['name']}/met"] = target["status"] == "MET"
        tracker.summary(flat)
        tracker.log_table(
            "benchmark/methods",
            [
                "method",
                "compute",
                "iqm_ratio",
                "ci_low",
                "ci_high",
                "median_ratio",
                "policy_win_rate",
                "diverged",
                "robust",
            ],
            rows,
        )
        for name, path in files.items():
            if name.endswith(".png"):
                tracker.log_image(f"benchmark/{Path(name).stem}", path)
        # results.json holds everything (the run folder also holds wandb/ itself: not that).
        tracker.log_artifact(files["results.json"], name="benchmark-results", type="benchmark")
