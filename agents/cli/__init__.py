"""The ``hpo-rl`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds a parser whose ``func`` default runs the command. User errors
(`ValueError`, `TypeError`, `FileNotFoundError`, `KeyError` from bad input)
end with a one-line message and exit code 2, not a traceback; set
``HPO_RL_TRACEBACK=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "agents.cli.train",
    "agents.cli.schedule",
    "agents.cli.benchmark",
    "agents.cli.bench",
)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo-rl",
        description="Reinforcement-learning hyperparameter control: meta-train a tuning "
        "policy with PPO, deploy it into new training runs, benchmark it.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand.

    A `HpoRlError` (something the user can fix) becomes one line on stderr and
    exit code 2; any other exception is a bug and keeps its traceback.
    """
    from hpo_env.errors import HpoRlError

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
    from agents.common.threads import configure_threads

    configure_threads()
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
