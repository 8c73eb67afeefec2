"""The evaluation core: tasks x methods x seeds -> a table of final objectives, and the oracle.

Every protocol of this package reduces to the same picture:

- a **task provider** turns (task, method, seed) into picklable work items: the
  held-out families (`agents.benchmark.work`: one batched run per item), the
  transfer suites (`agents.benchmark.transfer.protocol`: one plain-PyTorch run
  per item) and the RL suite (`agents.benchmark.transfer.rl`: one SB3 run per item);
- an **executor** runs the items (`agents.benchmark.executor`: here, local
  processes or Ray);
- the results become a `FinalTable`: per method label, a [tasks, seeds] array of
  final objectives (lower is better) and of divergence flags;
- **one statistics layer** (`agents.benchmark.stats`: strict wins, IQM with a
  bootstrap CI, per-task rows, robustness) and the oracle below read the table;
- **one report writer** (`agents.benchmark.report_files.write_report_files`)
  writes ``results.json``, ``results.md`` and the figures.

The oracle has one definition, `choose_oracle`: per task, the grid point (a
constant learning rate) with the lowest mean log final objective over the task's
seeds. It is chosen per task, never per (task, seed): the best constant a user
could have picked for the task, not the luckiest run of each seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpo_env.errors import ConfigError

LOG_FLOOR = 1e-30
"""Final objectives are floored here before the oracle takes their logarithm."""


@dataclasses.dataclass
class FinalTable:
    """Final objectives of every (method label, task, seed): ``finals[label]`` is [tasks, seeds]."""

    tasks: list[str]
    seeds: list[int]
    finals: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    diverged: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def add(self, label: str, finals: Any, diverged: Any = None) -> None:
        """Add a method's [tasks, seeds] finals (and divergence flags; default: none)."""
        table = np.asarray(finals, dtype=np.float64)
        shape = (len(self.tasks), len(self.seeds))
        if table.shape != shape:
            raise ConfigError(
                f"{label!r}: expected a [tasks, seeds] table {shape}, got {table.shape}"
            )
        self.finals[label] = table
        flags = (
            np.zeros(shape, dtype=bool) if diverged is None else np.asarray(diverged, dtype=bool)
        )
        self.diverged[label] = flags

    def __getitem__(self, label: str) -> np.ndarray:
        return self.finals[label]

    def __contains__(self, label: object) -> bool:
        return label in self.finals

    @classmethod
    def from_nested(
        cls,
        objectives: Mapping[str, Mapping[str, Sequence[float]]],
        diverged: Mapping[str, Mapping[str, Sequence[bool]]] | None,
        tasks: Sequence[str],
        seeds: Sequence[int],
    ) -> FinalTable:
        """From ``label -> task -> per-seed values`` mappings (the transfer result's layout)."""
        table = cls(list(tasks), list(seeds))
        for label, by_task in objectives.items():
            flags = None if diverged is None else [diverged[label][t] for t in tasks]
            table.add(label, [by_task[t] for t in tasks], flags)
        return table


def mean_log(finals: np.ndarray) -> float:
    """The oracle's score of one grid point on one task: mean log final objective over seeds."""
    return float(np.mean(np.log(np.maximum(finals, LOG_FLOOR))))


def choose_oracle(grid: Mapping[Any, np.ndarray]) -> tuple[list[Any], np.ndarray]:
    """The best-of-grid oracle, chosen per task.

    Args:
        grid: grid point (e.g. a learning rate, or a run label) -> [tasks, seeds]
            final objectives, in grid order (a tie goes to the earlier point).

    Returns:
        The chosen point of each task, and the oracle's [tasks, seeds] finals (each
        task's row taken from its chosen point, on every seed).
    """
    if not grid:
        raise ConfigError("the oracle needs at least one grid point, got none")
    points = list(grid)
    tables = [np.asarray(grid[p], dtype=np.float64) for p in points]
    n_tasks = tables[0].shape[0]
    chosen, rows = [], []
    for i in range(n_tasks):
        scores = [mean_log(t[i]) for t in tables]
        best = int(np.argmin(scores))  # the first of equal scores
        chosen.append(points[best])
        rows.append(tables[best][i])
    return chosen, np.stack(rows)
