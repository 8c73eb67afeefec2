"""Thin entry point: ``python scripts/ensemble.py OUT BUNDLE...`` = ``hpo-rl ensemble OUT BUNDLE...``."""

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["ensemble", *sys.argv[1:]]))
