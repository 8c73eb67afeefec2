"""Thin entry point: ``python scripts/schedule.py [options]`` = ``hpo-rl schedule [options]``."""

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["schedule", *sys.argv[1:]]))
