"""``hpo-rl transfer``: the tuning policy on realistic plain-PyTorch runs it never saw.

Trains every task of the chosen split (``validation`` for choosing recipes,
checkpoints and seeds; ``test`` for reporting, once) with the policy and with
the schedules practitioners use, in one ordinary training loop; writes
``results.json``, ``results.md`` and figures to ``--out`` and prints strict
win/tie/loss counts, IQM ratios, the per-task table (worst first), robustness
and whether each target is met. Finished runs are cached in
``<out>/runs.jsonl``: rerunning the same command resumes.

Example::

    hpo-rl transfer --split validation --quick
    hpo-rl transfer --split test --policy default --seeds 5 --out runs/transfer-test
    hpo-rl transfer --split test --workers 4   # same numbers, on 4 local processes
    hpo-rl transfer --split test --rl --rl-timesteps 50000   # adds SB3 PPO/A2C runs
    hpo-rl transfer --rl-only --workers 2   # the SB3 runs alone (cached in <out>/rl_runs.jsonl)
    hpo-rl transfer --split validation --rl-only --seeds 3   # SB3 runs on seeds 8000+
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.benchmark.transfer.protocol import TransferConfig

__all__ = ["config_from_args", "register", "run"]

COMMAND = "transfer"
SUMMARY = "the policy vs practitioners' schedules on unseen plain-PyTorch runs"
SPLITS = ("validation", "test")
"""The transfer suite's splits (`agents.benchmark.transfer.suite.SPLITS`; a test checks they agree)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help=SUMMARY,
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="test",
        help="validation: for choosing; test: report once, never choose on it (default: test)",
    )  # fmt: skip
    parser.add_argument(
        "--policy", default="default", help="shipped bundle name or bundle directory"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="run seeds per task (default: 5, quick: 2)"
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default: runs/transfer-<split>[-quick])"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke test: two tasks, two seeds, 150 updates each"
    )
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="task names of the split (default: all)"
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="ignore runs cached in <out>/runs.jsonl (and rl_runs.jsonl)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local processes training runs in parallel; the results do not depend on it "
        "(default: 1)",
    )
    parser.add_argument(
        "--rl",
        action="store_true",
        help="also run SB3 PPO/A2C (defaults vs the policy's callback) on CartPole and Acrobot",
    )
    parser.add_argument(
        "--rl-only",
        action="store_true",
        help="only the SB3 runs of --rl (the supervised suite is skipped)",
    )
    parser.add_argument(
        "--rl-timesteps",
        type=int,
        default=100_000,
        help="environment steps per RL run (default: 100000)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="only the rate probe: the policy started at x0.1, x1 and x10 of an SGD and an "
        "Adam task's best constant rate; is its mid-run rate within x3 of it? "
        "(writes <out>/probe.md)",
    )
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TransferConfig:
    """The settings the command line asks for."""
    from agents.benchmark.transfer.protocol import TransferConfig

    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    out = args.out or f"runs/transfer-{args.split}{'-quick' if args.quick else ''}"
    return TransferConfig(
        split=args.split,
        policy=args.policy,
        n_seeds=seeds,
        tasks=tuple(args.tasks or ()),
        quick=args.quick,
        out_dir=out,
        resume=not args.no_resume,
        progress=not args.no_progress,
        workers=args.workers,
    )


def run(args: argparse.Namespace) -> int:
    from agents.benchmark.transfer.protocol import run_transfer

    config = config_from_args(args)
    if args.probe:
        return run_probe(args, config)
    if not args.rl_only:
        run_transfer(config)
    if args.rl or args.rl_only:
        run_rl(args, config)
    return 0


def run_probe(args: argparse.Namespace, config: TransferConfig) -> int:
    """The rate probe alone (`agents.benchmark.transfer.probe`); prints and writes its table."""
    from pathlib import Path

    from agents.benchmark.transfer.probe import format_probe
    from agents.benchmark.transfer.probe import run_probe as probe
    from agents.common.files import atomic_write_text
    from agents.common.platform import describe_platform

    rows = probe(
        config.policy,
        config.split,
        n_seeds=args.seeds if args.seeds is not None else 2,
        tasks=tuple(args.tasks) if args.tasks else None,
        workers=config.workers,
    )
    text = format_probe(rows)
    out = Path(config.out_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    footer = f"\npolicy {config.policy}, split {config.split}; {describe_platform()}\n"
    atomic_write_text(out / "probe.md", text + footer)
    print(text, end="")
    return 0


def run_rl(args: argparse.Namespace, config: TransferConfig) -> None:
    """The RL part: ``rl_results.json`` beside the supervised report, and a printed summary."""
    from pathlib import Path

    from agents.benchmark.transfer.rl import RLTransferConfig, format_rl_summary, run_rl_transfer
    from agents.common.files import atomic_write_json

    rl_config = RLTransferConfig(
        policy=config.policy,
        split=args.split,
        n_seeds=config.n_seeds,
        total_timesteps=args.rl_timesteps,
        quick=config.quick,
        workers=config.workers,
        out_dir=config.out_dir,
        resume=config.resume,
    )
    result = run_rl_transfer(rl_config, progress=config.progress)
    atomic_write_json(Path(config.out_dir or ".") / "rl_results.json", result)
    cached = f", {result['cached']} read from the cache" if result["cached"] else ""
    print(f"\nRL runs ({result['wall_s']:.0f} s{cached}):\n{format_rl_summary(result['summary'])}")
