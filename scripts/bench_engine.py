"""Batched engine vs separate torch loops: ``python scripts/bench_engine.py [--quick]``."""

from __future__ import annotations

import argparse

from agents.perf.engine import run_engine_bench
from agents.train.config import PRESETS

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer tasks, shorter timings")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sampled tasks")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args()
    run_engine_bench(quick=args.quick, seed=args.seed, device=args.device, presets=PRESETS)
