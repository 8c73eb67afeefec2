"""Batched engine vs separate torch loops: ``python scripts/bench_engine.py [--quick]``."""

from __future__ import annotations

import argparse

from agents.perf.engine import run_engine_bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer tasks, shorter timings")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sampled tasks")
    args = parser.parse_args()
    run_engine_bench(quick=args.quick, seed=args.seed)
