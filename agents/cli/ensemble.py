"""``hpo-rl ensemble``: join bundles of one recipe (other training seeds) into one policy.

The ensemble acts on the mean of its members' actions (each member normalises its own
observations); it loads, deploys and benchmarks like any bundle.

Example::

    hpo-rl ensemble runs/ensemble runs/seed1/bundle runs/seed2/bundle runs/seed3/bundle
    hpo-rl transfer --split validation --policy runs/ensemble
"""

from __future__ import annotations

import argparse
from typing import Any

COMMAND = "ensemble"
SUMMARY = "join bundles trained with other seeds into one policy acting on their mean"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        COMMAND, help=SUMMARY, description=__doc__.split("\n\n")[1] if __doc__ else None
    )
    parser.add_argument("out", help="the ensemble bundle's directory (written)")
    parser.add_argument("bundles", nargs="+", help="two or more member bundles (or shipped names)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agents.policy.ensemble import write_ensemble
    from agents.policy.tuning_policy import TuningPolicy

    if len(args.bundles) < 2:
        from hpo_env.errors import ConfigError

        raise ConfigError(f"an ensemble needs 2 or more bundles, got {len(args.bundles)}")
    path = write_ensemble(args.out, args.bundles)
    print(f"ensemble of {len(args.bundles)} bundles written to {path}: {TuningPolicy.load(path)!r}")
    return 0
