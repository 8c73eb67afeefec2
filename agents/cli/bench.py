"""``hpo-rl bench {engine,families,control,overhead,ray}``: speed benchmarks that print
ratios measured side by side in one run."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from hpo_env.errors import ConfigError

BENCHMARKS = {
    "engine": (
        "agents.perf.engine",
        "run_engine_bench",
        "batched engine vs separate torch loops; env overhead",
    ),
    "control": (
        "agents.perf.control",
        "run_control_bench",
        "batched classic-control physics vs gymnasium",
    ),
    "overhead": (
        "agents.perf.overhead",
        "run_overhead_bench",
        "deployed scheduler's cost in a plain PyTorch loop",
    ),
    "families": (
        "agents.perf.families",
        "run_families_bench",
        "torch.func families: B=32 batched vs 32 plain loops; hand-batched vs torch.func MLP",
    ),
    "ray": (
        "agents.perf.ray",
        "run_ray_bench",
        "meta-training rollouts on 1 and 2 Ray workers vs local",
    ),
}


COMMAND = "bench"
SUMMARY = "speed benchmarks (ratios measured side by side)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(COMMAND, help=SUMMARY)
    parser.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (seconds, for CI)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sampled tasks")
    parser.add_argument(
        "--device",
        default="cpu",
        help="engine and families: where batched runs compute (cpu, cuda, cuda:N, auto)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    module_name, func_name, _ = BENCHMARKS[args.which]
    kwargs: dict[str, Any] = {"quick": args.quick, "seed": args.seed}
    if args.which == "engine":
        from agents.train.config import PRESETS

        kwargs.update(device=args.device, presets=PRESETS)
    elif args.which == "families":
        kwargs.update(device=args.device)
    elif args.device != "cpu":
        raise ConfigError(
            f"--device applies to `hpo-rl bench engine` only, got --device {args.device!r} "
            f"for `bench {args.which}`"
        )
    func = getattr(importlib.import_module(module_name), func_name)
    func(**kwargs)
    return 0
