"""Batched classic-control physics vs Gymnasium, and the inner learner's speed:
``python scripts/bench_control.py [--quick] [--threads N]``."""

from __future__ import annotations

import argparse

from agents.perf.control import run_control_bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, seconds (not representative)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--n-runs", type=int, default=64, help="B of the batched physics")
    parser.add_argument("--n-envs", type=int, default=1024, help="E per run of the batched physics")
    args = parser.parse_args()
    run_control_bench(
        n_runs=args.n_runs, n_envs=args.n_envs, n_threads=args.threads, quick=args.quick
    )
