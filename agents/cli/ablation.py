"""``hpo-rl ablation``: recipes at equal wall-clock, several training seeds, scored on validation.

Trains every row (the ``baseline`` preset, then one lever added per row) with each
training seed for the same wall-clock budget, scores every bundle on the transfer
suite's ``validation`` split and writes ``ablation.md`` and ``ablation.json`` to
``--out``. Rerunning the same command resumes: finished bundles and transfer runs
are kept, killed runs continue from their last checkpoint.

Example::

    hpo-rl ablation --minutes 6 --seeds 1 2 3 --workers 2
    hpo-rl ablation --rows baseline relative --minutes 2 --seeds 1 2
"""

from __future__ import annotations

import argparse
from typing import Any

COMMAND = "ablation"
SUMMARY = "compare meta-training recipes at equal wall-clock on the validation split"
ROW_NAMES = ("baseline", "relative", "groups", "paired", "functional")
"""`agents.train.ablation.ROWS`' names (a test checks they agree); listed here so --help imports no torch."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        COMMAND, help=SUMMARY, description=__doc__.split("\n\n")[1] if __doc__ else None
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROW_NAMES,
        default=list(ROW_NAMES),
        help="rows to train, each adding one lever to the one before (default: all)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[1, 2, 3],
        help="training seeds per row (default: 1 2 3)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=6.0,
        help="wall-clock budget of every training run (default: 6)",
    )
    parser.add_argument(
        "--total-timesteps",
        type=int,
        default=100_000_000,
        help="decisions cap per run, far above the budget so that the budget binds",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="training (and transfer) processes at a time (default: 2)",
    )
    parser.add_argument(
        "--transfer-seeds", type=int, default=3, help="run seeds per validation task (default: 3)"
    )
    parser.add_argument(
        "--sweep",
        nargs="+",
        type=float,
        default=[0.1, 1.0, 10.0],
        help="start-rate multiples of the robustness sweep (default: 0.1 1 10)",
    )
    parser.add_argument(
        "--out", default="runs/ablation", help="output folder (default: runs/ablation)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from agents.common.extras import require_extras

    require_extras("hpo-rl ablation", {"stable_baselines3": "train", "sklearn": "train"})
    from agents.train.ablation import AblationConfig, run_ablation

    config = AblationConfig(
        rows=tuple(args.rows),
        seeds=tuple(args.seeds),
        minutes=args.minutes,
        total_timesteps=args.total_timesteps,
        workers=args.workers,
        transfer_seeds=args.transfer_seeds,
        sweep=tuple(args.sweep),
        out_dir=args.out,
        progress=not args.no_progress,
    )
    result = run_ablation(config)
    print(result["table"], end="")
    return 0
