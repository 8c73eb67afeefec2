"""The rate probe: does the policy find a run's own rate, or pull every run to one rate?

For each probe task: the best constant rate on a grid around the user's start
(chosen on the mean log final loss over the seeds, as the transfer oracle is),
then the policy started at x0.1, x1 and x10 of that best rate. A policy that
finds each run's rate has, at mid-run, a rate within `PROBE_FACTOR` of the best
one from every start; one that has learned a single absolute rate lands on that
rate whatever the task (issue 26: ~3e-3 for SGD and Adam alike).

The rate read is the one in effect at mid-run *after* the bundle's annealing
prior (cosine with warm-up halves the rate by mid-run): a constant-rate user
compares it with a constant rate, and a factor of 3 absorbs the prior's 2.

Example::

    hpo-rl transfer --probe --split validation --policy runs/train/bundle
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from agents.benchmark.transfer.loop import RunResult
from agents.benchmark.transfer.methods import Constant, PolicyMethod
from agents.benchmark.transfer.parallel import Job, run_jobs
from agents.benchmark.transfer.protocol import TRANSFER_SEED_BASE
from agents.benchmark.transfer.suite import TaskSpec, tasks_for
from hpo_env.errors import ConfigError

PROBE_TASKS = {
    "validation": (
        "digits_mlp_sgd_momentum",
        "docs_transformer_sgd_momentum",
        "classification_mlp_adam",
        "digits_rows_lstm_adam",
    ),
    "test": (
        "chars_cnn1d_sgd_momentum",
        "breast_cancer_resmlp_sgd_momentum",
        "diabetes_resmlp_adam",
        "chars_gru_adam",
    ),
}
"""SGD-momentum and Adam tasks of each split (the issue's two kinds of run)."""
BEST_RATE_GRID = tuple(10.0 ** (k / 2) for k in range(-3, 4))
"""Constant rates searched for the best one: x10^-1.5 ... x10^1.5 of the user's start."""
PROBE_STARTS = (0.1, 1.0, 10.0)
"""The policy's start rates, as multiples of the task's best constant rate."""
PROBE_FACTOR = 3.0
"""Mid-run rate within this factor of the best constant rate: the probe passes."""


@dataclasses.dataclass(frozen=True)
class ProbeRow:
    task: str
    optimizer: str
    best_rate: float
    start_multiple: float
    mid_run_rates: tuple[float, ...]
    """Per seed: the rate in effect at the middle update."""

    @property
    def ratio(self) -> float:
        """Geometric mean over seeds of mid-run rate / best constant rate."""
        logs = [math.log(r / self.best_rate) for r in self.mid_run_rates if r > 0]
        return math.exp(float(np.mean(logs))) if logs else float("nan")

    @property
    def passed(self) -> bool:
        return 1.0 / PROBE_FACTOR <= self.ratio <= PROBE_FACTOR


def mid_run_rate(result: RunResult, n_updates: int) -> float:
    """The recorded rate nearest the middle update."""
    steps = np.asarray(result.lr_steps)
    if steps.size == 0:
        return float("nan")
    return float(result.lrs[int(np.argmin(np.abs(steps - n_updates / 2)))])


def run_probe(
    policy: Any = "default",
    split: str = "validation",
    n_seeds: int = 2,
    tasks: tuple[str, ...] | None = None,
    workers: int = 1,
    specs: list[TaskSpec] | None = None,
) -> list[ProbeRow]:
    """The probe's rows: one per (task, start multiple), SGD tasks first.

    Args:
        policy: Shipped bundle name, bundle directory or loaded policy.
        split: The transfer suite's split whose probe tasks to run (`PROBE_TASKS`).
        n_seeds: Run seeds per task and start.
        tasks: Task names of the split instead of `PROBE_TASKS`.
        workers: Local processes training runs in parallel.
        specs: Task specs instead of names (tests use short ones).
    """
    if n_seeds < 1:
        raise ConfigError(f"n_seeds must be >= 1, got {n_seeds!r}")
    if specs is None:
        names = tasks or PROBE_TASKS.get(split)
        if not names:
            raise ConfigError(f"no probe tasks for split {split!r}; pass task names")
        specs = tasks_for(split, names)
    seeds = [TRANSFER_SEED_BASE + i for i in range(n_seeds)]
    method = PolicyMethod(policy)
    constant = Constant()
    methods = [constant, method]

    grid_jobs = [
        Job(t, f"constant@x{m:.3g}", 0, m, s) for t in specs for m in BEST_RATE_GRID for s in seeds
    ]
    grid = dict(_collect(grid_jobs, methods, workers))
    best: dict[str, float] = {}
    for t in specs:
        scores = [
            np.mean([math.log(max(grid[(t.name, m, s)].objective, 1e-12)) for s in seeds])
            for m in BEST_RATE_GRID
        ]
        best[t.name] = BEST_RATE_GRID[int(np.argmin(scores))]
    probe_jobs = [
        Job(t, f"policy@best x{p:g}", 1, best[t.name] * p, s)
        for t in specs
        for p in PROBE_STARTS
        for s in seeds
    ]
    runs = dict(_collect(probe_jobs, methods, workers))
    rows = []
    for t in sorted(specs, key=lambda t: t.optimizer != "sgd_momentum"):
        for p in PROBE_STARTS:
            rows.append(
                ProbeRow(
                    task=t.name,
                    optimizer=t.optimizer,
                    best_rate=t.start_lr * best[t.name],
                    start_multiple=p,
                    mid_run_rates=tuple(
                        mid_run_rate(runs[(t.name, best[t.name] * p, s)], t.n_updates)
                        for s in seeds
                    ),
                )
            )
    return rows


def _collect(
    jobs: list[Job], methods: list[Any], workers: int
) -> list[tuple[tuple[str, float, int], RunResult]]:
    return [
        ((jobs[j].task.name, jobs[j].lr_multiplier, jobs[j].seed), result)
        for j, result in run_jobs(jobs, methods, workers)
    ]


def format_probe(rows: list[ProbeRow]) -> str:
    """A markdown table and the pass count."""
    lines = [
        "| Task | Optimizer | Best constant rate | Policy started at | Mid-run rate / best | "
        f"Within x{PROBE_FACTOR:g} |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.task} | {row.optimizer} | {row.best_rate:.3g} | x{row.start_multiple:g} "
            f"| {row.ratio:.3g} | {'yes' if row.passed else '**no**'} |"
        )
    passed = sum(r.passed for r in rows)
    lines.append("")
    lines.append(f"rate probe: {passed} of {len(rows)} within x{PROBE_FACTOR:g} of the best rate")
    return "\n".join(lines) + "\n"
