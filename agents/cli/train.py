"""``hpo-rl train``: meta-train a tuning policy with PPO (or resume a run).

Examples::

    hpo-rl train --preset smoke --out-dir runs/smoke --wandb-mode disabled
    hpo-rl train --preset default --out-dir runs/default
    hpo-rl train --resume runs/default            # continue after a kill
    hpo-rl train --resume runs/default --total-timesteps 200000   # train longer
"""

from __future__ import annotations

import argparse
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
        "only --total-timesteps, --wandb-mode, --wandb-name, --progress-bar and --device may change)",
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
        bundle = train(
            PRESETS["default"],
            resume_dir=args.resume,
            command=command,
            resume_overrides=overrides_from_args(args, TrainConfig),
        )
    else:
        bundle = train(config_from_args(args), command=command)
    print(f"policy bundle written to {bundle}")
    return 0


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
