"""The tuning policy vs baselines on held-out tasks: ``python scripts/benchmark.py [--quick] ...``
(the same as ``hpo-rl benchmark``; see ``--help``)."""

from __future__ import annotations

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
