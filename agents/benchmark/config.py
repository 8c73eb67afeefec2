"""`BenchmarkConfig`: the held-out evaluation protocol, its presets, and the evaluation seeds (their one home)."""

from __future__ import annotations

import dataclasses

import numpy as np

from hpo_env.errors import ConfigError

EVAL_SEED_BASE = 2**31
"""Evaluation run seeds are ``EVAL_SEED_BASE + i``. `EpisodeEngine` draws every
meta-training run seed from ``[0, 2**31 - 1)``, so evaluation seeds can never
coincide with a run the policy was trained on."""


BENCHMARK_SEED_OFFSET = 1000
"""The benchmark's seeds are ``eval_seeds(n, offset=1000)``: disjoint from meta-training
and from the trainer's periodic held-out evaluation (``TrainConfig.eval_seeds``,
``EVAL_SEED_BASE + 0..3``), which may select checkpoints and so must not be reused
for the reported numbers."""


def eval_seeds(n_seeds: int, offset: int = 0) -> list[int]:
    """``n_seeds`` fresh run seeds, disjoint from every meta-training seed.

    Args:
        n_seeds: How many seeds.
        offset: Skip this many (use distinct offsets for disjoint evaluation sets).
    """
    if n_seeds < 1 or offset < 0:
        raise ConfigError(f"expected n_seeds >= 1 and offset >= 0, got {n_seeds=}, {offset=}")
    return [EVAL_SEED_BASE + offset + i for i in range(n_seeds)]


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """The held-out evaluation protocol (`FULL_BENCHMARK` and `QUICK_BENCHMARK` are presets)."""

    tasks: tuple[str, ...] = ()
    """Task names for `tasks.distribution.task_by_name`; empty = every ``list_tasks("heldout")``."""
    n_seeds: int = 5
    """Run seeds per task: ``eval_seeds(n_seeds, seed_offset)``, never used in meta-training."""
    seed_offset: int = BENCHMARK_SEED_OFFSET
    """Offset into the evaluation seeds (use another to get a disjoint evaluation set)."""
    grid_size: int = 19
    """Constant learning rates of the best-of-grid oracle (its compute multiple)."""
    grid_decades: tuple[float, float] = (-2.5, 2.0)
    """The grid spans ``default_lr * 10**lo .. default_lr * 10**hi``, log-spaced."""
    sweep_lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    """Initial learning rates of the robustness sweep (scaled per task, see `sweep_lrs_for`); empty = no sweep."""
    robustness_factor: float = 1.25
    """A sweep run is robust if its final objective is within this factor of the oracle's."""
    val_every: int = 1
    """Validation cadence the controllers see (the objective is measured every decision)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for the confidence intervals."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap's numpy generator."""
    arms_per_item: int = 12
    """Methods sharing one batched run per work item (0 = all of a task's)."""
    seeds_per_item: int = 0
    """Seeds per work item (0 = all)."""
    backend: str = "local"
    """``local`` (this process, or ``workers`` local processes) or ``ray`` (work items as Ray
    tasks); the executor of `agents.benchmark.executor`. The numbers do not depend on it."""
    workers: int = 1
    """Local worker processes for ``backend="local"`` (1 = this process)."""
    ray_address: str | None = None
    """Ray cluster address for ``backend="ray"`` (None: a local Ray)."""
    quick: bool = False
    """A smoke test (CI): reports say so, and the numbers are not for quoting."""

    def __post_init__(self) -> None:
        from agents.common.validation import check_field_types

        check_field_types(self)
        if self.n_seeds < 1:
            raise ConfigError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if self.grid_size < 2:
            raise ConfigError(f"grid_size must be >= 2, got {self.grid_size}")
        if self.grid_size < 8 and not self.quick:
            import warnings

            warnings.warn(
                f"grid_size={self.grid_size} < 8: the best-of-grid oracle is coarse, so ratios to it "
                "flatter every method (fine for a smoke test: set quick=True; not for reported numbers)",
                stacklevel=2,
            )
        lo, hi = self.grid_decades
        if not lo < 0 < hi:
            raise ConfigError(
                f"grid_decades must straddle the default (lo < 0 < hi), got {self.grid_decades}"
            )
        if any(not (np.isfinite(v) and v > 0) for v in self.sweep_lrs):
            raise ConfigError(f"sweep_lrs must be finite numbers > 0, got {self.sweep_lrs}")
        if not self.robustness_factor > 1:
            raise ConfigError(f"robustness_factor must be > 1, got {self.robustness_factor}")
        if (
            self.val_every < 0
            or self.n_bootstrap < 1
            or self.arms_per_item < 0
            or self.seeds_per_item < 0
        ):
            raise ConfigError(
                "expected val_every >= 0, n_bootstrap >= 1, arms_per_item >= 0, seeds_per_item >= 0, got "
                f"{self.val_every=}, {self.n_bootstrap=}, {self.arms_per_item=}, {self.seeds_per_item=}"
            )
        if isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(
                f"workers must be an int >= 1 (e.g. --workers 4), got {self.workers!r}"
            )
        if self.backend not in ("local", "ray"):
            from hpo_env.errors import unknown_name_error

            raise unknown_name_error("backend", self.backend, ["local", "ray"])


HELDOUT_FAMILY_TASKS = (
    "control_acrobot", "control_cartpole:heldout", "digits_cnn", "digits_mlp:heldout",
    "gaussian_mixture_mlp:heldout", "overfit_digits_mlp:heldout", "overfit_mixture_mlp:heldout",
    "overfit_teacher_mlp:heldout", "sinusoid_mlp:heldout", "teacher_regression_mlp:heldout",
)  # fmt: skip
"""The held-out variants of the hand-batched training families: the README table's tasks.
Named, not ``list_tasks("heldout")``: the `tasks.functional` families register their
test role as ``heldout`` too, and their runs (400-3,000 updates of transformers and
recurrent nets, times a 19-point grid) would multiply the protocol's time."""

FULL_BENCHMARK = BenchmarkConfig(tasks=HELDOUT_FAMILY_TASKS)
"""The held-out family tasks, 5 seeds, a 19-point grid (quarter decades), the 5-point sweep:
the README table."""
QUICK_BENCHMARK = BenchmarkConfig(
    tasks=("teacher_regression_mlp:heldout", "digits_mlp:heldout"),
    n_seeds=2,
    grid_size=6,
    grid_decades=(-1.0, 1.5),
    sweep_lrs=(1e-4, 1e-2, 1.0),
    n_bootstrap=500,
    arms_per_item=0,
    quick=True,
)
"""Minutes on a laptop, for CI: two supervised held-out tasks, 2 seeds, a short grid."""
