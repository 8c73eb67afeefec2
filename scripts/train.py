"""Meta-train a tuning policy: the same as ``hpo-rl train`` (see ``--help``)."""

import sys

from agents.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
