"""The ``hpo-rl`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds a parser whose ``func`` default runs the command. User errors
(`hpo_env.errors.HpoRlError`) end with a one-line message and exit code 2,
not a traceback; set ``HPO_RL_TRACEBACK=1`` to see the traceback anyway.

Parsing imports no torch, wandb or Ray (``--help`` answers in well under a
second); a command imports what it needs when it runs. Commands are quiet by
default (``WANDB_SILENT=true``, Ray Tune's reporter off) so that their result
line is the last thing printed; ``--verbose`` lets those libraries talk.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata

COMMAND_MODULES = (
    "agents.cli.train",
    "agents.cli.schedule",
    "agents.cli.benchmark",
    "agents.cli.bench",
    "agents.cli.transfer",
    "agents.cli.ablation",
    "agents.cli.ensemble",
)


def package_version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    try:
        return metadata.version("hpo-rl")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="let wandb and Ray print their own output (quiet by default)",
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``hpo-rl`` parser.

    Args:
        argv: The command line about to be parsed: only the command it names is
            registered in full (a fast ``--help``). None registers every command.
    """
    parser = argparse.ArgumentParser(
        prog="hpo-rl",
        description="Reinforcement-learning hyperparameter control: meta-train a tuning "
        "policy with PPO, deploy it into new training runs, benchmark it.",
    )
    parser.add_argument("--version", action="version", version=f"hpo-rl {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _command_in(argv) if argv is not None else None
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        name, summary = getattr(module, "COMMAND", None), getattr(module, "SUMMARY", None)
        if argv is not None and name is not None and summary and name != chosen:
            # Listed by name only: its options (and the imports they need, e.g.
            # train's presets import torch) load when it is the command.
            subparsers.add_parser(name, help=summary)
        else:
            module.register(subparsers)
    for subparser in subparsers.choices.values():
        add_verbose_flag(subparser)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on a command line (the top level takes no option values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def quiet_libraries(verbose: bool) -> None:
    """wandb prints sync hints and banners at start and finish, Ray its workers'
    logs; silence both unless ``--verbose`` (explicit environment values win)."""
    if not verbose:
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("HPO_RL_QUIET", "1")  # read by agents.common.ray_backend


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand.

    A `HpoRlError` (something the user can fix) becomes one line on stderr and
    exit code 2; any other exception is a bug and keeps its traceback.
    """
    from agents.common.threads import configure_threads
    from hpo_env.errors import HpoRlError

    quiet_libraries(bool(getattr(args, "verbose", False)))
    configure_threads()
    try:
        result = args.func(args)
    except HpoRlError as exc:
        if os.environ.get("HPO_RL_TRACEBACK"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"hpo-rl {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hpo-rl {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser(argv).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
