"""Thin entry point: ``python scripts/ablation.py [options]`` = ``hpo-rl ablation [options]``."""

import sys

from agents.cli import main

if __name__ == "__main__":
    sys.exit(main(["ablation", *sys.argv[1:]]))
