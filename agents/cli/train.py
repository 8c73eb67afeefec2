"""``hpo-rl train``: meta-train a tuning policy with PPO (or resume a run).

Examples::

    hpo-rl train --preset smoke --out-dir runs/smoke --wandb-mode disabled
    hpo-rl train --preset default --out-dir runs/default
    hpo-rl train --resume runs/default            # continue after a kill
    hpo-rl train --resume runs/default --total-timesteps 200000   # train longer
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from agents.common.validation import add_config_arguments, overrides_from_args

COMMAND = "train"
SUMMARY = "meta-train a tuning policy with PPO across a task distribution"


def register(subparsers: Any) -> None:
    from agents.train.config import PRESETS, TrainConfig

    parser = subparsers.add_parser(
        COMMAND,
        help=SUMMARY,
        description=(
            "Meta-train a hyperparameter-control policy with PPO. Writes OUT_DIR/config.json, "
            "OUT_DIR/checkpoints/, OUT_DIR/eval.jsonl and the policy bundle OUT_DIR/bundle/. "
            f"Presets: {', '.join(PRESETS)}; any field below overrides the preset."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        default="default",
        metavar="NAME",
        help=f"named TrainConfig to start from, one of {list(PRESETS)}",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the run in DIR from its last checkpoint (its config.json is reused; "
        "only --total-timesteps, --max-wall-time-s, --wandb-mode, --wandb-name, --progress-bar, "
        "--device and --member-workers may change)",
    )
    add_config_arguments(parser, TrainConfig, defaults=PRESETS["default"])
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    from agents.train.config import PRESETS, TrainConfig, get_preset
    from hpo_env.errors import unknown_name_error

    if args.preset not in PRESETS:
        raise unknown_name_error("preset", args.preset, list(PRESETS))
    return get_preset(args.preset, **overrides_from_args(args, TrainConfig))


def run(args: argparse.Namespace) -> int:
    from agents.common.extras import require_extras

    require_extras(
        "hpo-rl train",
        {"stable_baselines3": "train", "sklearn": "train", "tqdm": "train"},
    )
    from agents.train.config import PRESETS, TrainConfig
    from agents.train.trainer import train

    command = " ".join(sys.argv)
    if args.resume is not None:
        run_dir, kwargs = args.resume, {"resume_dir": args.resume}
        config = PRESETS["default"]
        kwargs["resume_overrides"] = overrides_from_args(args, TrainConfig)
    else:
        config = config_from_args(args)
        run_dir, kwargs = config.out_dir, {}
    try:
        bundle = train(config, command=command, **kwargs)
    except KeyboardInterrupt:
        # train() has closed its progress bar and tracker: this is the last line printed.
        print(interrupted_message(run_dir), file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT_CODE
    print(f"policy bundle written to {bundle}")
    return 0


INTERRUPTED_EXIT_CODE = 130
"""128 + SIGINT, what shells report for a run stopped by Ctrl-C."""


def interrupted_message(run_dir: str) -> str:
    """What Ctrl-C prints: the exact command that continues the run, when there is one."""
    from pathlib import Path

    from agents.train.checkpoints import CONFIG_FILE

    if not (Path(run_dir) / CONFIG_FILE).is_file():
        return f"hpo-rl {COMMAND}: interrupted before the run started; nothing to resume"
    return (
        f"hpo-rl {COMMAND}: interrupted; continue the run (from its last checkpoint) with "
        f"`hpo-rl train --resume {shlex.quote(str(run_dir))}`"
    )


def main(argv: list[str] | None = None) -> int:
    """``hpo-rl train ARGS`` as a function (what scripts/train.py calls).

    Builds only this subcommand's parser, so it works without the other
    subcommand modules; errors are reported like the ``hpo-rl`` CLI does.
    """

    from agents.cli import add_verbose_flag, run_command

    parser = argparse.ArgumentParser(prog="hpo-rl")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(subparsers)
    add_verbose_flag(subparsers.choices["train"])
    return run_command(parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
