"""Population Based Training over Ray Tune: the population baseline of the benchmark.

Why ~500 lines in one module: the Tune trainable, its checkpoint format and the runner
that reads those checkpoints back must change together.

For each run seed, a population of ``population_size`` members trains the same
task run (``task.build([seed])``: same data split, initialisation and batches)
from learning rates spread log-uniformly around the start value. Every member
reports its validation objective after each control interval of
``task.updates_per_step`` inner updates (one `tune.report` per interval, like
one decision of the policy). Every ``perturbation_interval`` intervals,
`ray.tune.schedulers.PopulationBasedTraining` replaces the bottom quantile of
members by copies of the top quantile (exploit: the run state is checkpointed
and restored, so a copy continues the donor's run) and perturbs or resamples
their learning rate (explore). The result for the seed is the member with the
lowest objective at the end, with its lineage's full curve.

**Compute accounting** (``PBTConfig.accounting``):

- ``"population"`` (default): every member trains the task's full budget
  (``control_steps x updates_per_step`` inner updates), so PBT spends
  ``population_size`` times the policy's compute, reported as
  ``compute_multiple`` like the best-of-grid oracle's. Chosen because the
  benchmark's objective is the validation loss *after the task's budget*: a
  member trained for a fraction of it solves a different (shorter) problem
  and would lose by construction, which measures run length, not tuning. It
  is also how PBT is used (P workers, the wall-clock of one run).
- ``"equal_total"``: the population together spends the policy's compute:
  each member trains ``control_steps // population_size`` intervals (at least
  one). The curves after a member's budget are NaN.

As a benchmark method: ``run_benchmark(config, methods=[*DEFAULT_METHODS,
pbt_method()])``, or ``hpo-rl benchmark --pbt on``.

Example:
    >>> from agents.benchmark.pbt import PBTConfig, pbt_rollout
    >>> result = pbt_rollout(task, seeds=[1, 2], config=PBTConfig(population_size=4))  # doctest: +SKIP
    >>> result.final_objective  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from agents.common.threads import configure_threads
from agents.common.validation import check_field_types
from hpo_env.errors import ConfigError
from hpo_env.interval import run_interval
from hpo_env.reward import RewardConfig, objective_of

if TYPE_CHECKING:
    from agents.controllers.rollout import RolloutResult

LR = "learning_rate"
STATE_FILE = "member.pkl"
METRIC = "objective"
Accounting = Literal["population", "equal_total"]


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """Population Based Training settings (`QUICK_PBT` is the CI preset)."""

    population_size: int = 4
    """Members per run seed (P)."""
    accounting: Accounting = "population"
    """``population``: each member trains the full budget (P x the policy's compute);
    ``equal_total``: each member trains 1/P of it (the policy's compute in all)."""
    perturbation_interval: int = 0
    """Control intervals between exploit/explore steps (0: a quarter of a member's budget)."""
    quantile_fraction: float = 0.25
    """Bottom fraction replaced by copies of the top fraction at each perturbation
    (Tune rounds the member count up, so at least one is replaced)."""
    resample_probability: float = 0.25
    """Chance that explore resamples the learning rate instead of perturbing it."""
    perturbation_factors: tuple[float, float] = (1.2, 0.8)
    """Multipliers explore applies to the learning rate (Tune's defaults)."""
    init_spread_decades: float = 1.0
    """Initial learning rates span start_lr * 10**[-spread, +spread], log-spaced."""
    search_decades: tuple[float, float] = (-3.0, 1.0)
    """Resampled learning rates are log-uniform in start_lr * 10**[lo, hi]."""
    cpus_per_member: float = 0.0
    """CPUs Ray reserves per member; 0: the cluster's CPUs shared by the population
    (at most 1 each; a token share when PBT itself runs inside a Ray task)."""
    ray_address: str | None = None
    """Ray cluster address (None: a local Ray unless one is running)."""
    seed: int = 0
    """Seeds the driver's `random` (Tune's explore draws); trial timing still varies."""

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.population_size < 2:
            raise ConfigError(f"population_size must be >= 2, got {self.population_size}")
        if self.perturbation_interval < 0:
            raise ConfigError(
                f"perturbation_interval must be >= 0 (0 = auto), got {self.perturbation_interval}"
            )
        if not 0 < self.quantile_fraction <= 0.5:
            raise ConfigError(
                f"quantile_fraction must be in (0, 0.5], got {self.quantile_fraction}"
            )
        if not 0 <= self.resample_probability <= 1:
            raise ConfigError(
                f"resample_probability must be in [0, 1], got {self.resample_probability}"
            )
        if any(not (math.isfinite(f) and f > 0) for f in self.perturbation_factors):
            raise ConfigError(
                f"perturbation_factors must be finite and > 0, got {self.perturbation_factors}"
            )
        lo, hi = self.search_decades
        if not lo < hi:
            raise ConfigError(
                f"search_decades must be (lo, hi) with lo < hi, got {self.search_decades}"
            )
        if not (math.isfinite(self.init_spread_decades) and self.init_spread_decades >= 0):
            raise ConfigError(f"init_spread_decades must be >= 0, got {self.init_spread_decades}")
        if self.cpus_per_member < 0:
            raise ConfigError(f"cpus_per_member must be >= 0, got {self.cpus_per_member}")

    def compute_multiple(self) -> float:
        """Training compute relative to one run of the task (the policy's)."""
        return float(self.population_size) if self.accounting == "population" else 1.0

    def member_intervals(self, control_steps: int) -> int:
        """Control intervals each member trains."""
        if self.accounting == "population":
            return control_steps
        return max(1, control_steps // self.population_size)

    def interval(self, control_steps: int) -> int:
        """Control intervals between perturbations."""
        if self.perturbation_interval:
            return self.perturbation_interval
        return max(1, self.member_intervals(control_steps) // 4)

    def initial_lrs(self, start_lr: float) -> list[float]:
        """The population's starting learning rates (deterministic, log-spaced)."""
        spread = self.init_spread_decades
        exps = np.linspace(-spread, spread, self.population_size)
        return [float(start_lr * 10.0**e) for e in exps]


DEFAULT_PBT = PBTConfig()
"""4 members, each trains the full budget (4x the policy's compute)."""
QUICK_PBT = PBTConfig(population_size=2, perturbation_interval=2, quantile_fraction=0.5)
"""2 members (CI); exploits every 2 intervals."""


# ----------------------------------------------------------------------------- the member


def _trainable_class() -> type:
    """`_PBTMember` is built lazily so importing this module does not import Ray."""
    from ray import tune

    class PBTMember(tune.Trainable):
        """One population member: one run of the task (B=1) and its lineage's history."""

        def setup(self, config: dict[str, Any]) -> None:
            configure_threads(1)  # members share the machine's cores
            task = config["task"]
            self.k = int(task.updates_per_step)
            self.reward_config = config.get("reward_config") or RewardConfig()
            self.run = task.build([int(config["seed"])])
            start = {
                k: torch.tensor([float(v)], dtype=torch.float32)
                for k, v in dict(config.get("initial_hparams") or {}).items()
                if k in self.run.hparam_names
            }
            if start:
                self.run.set_hyperparameters(start)
            self.first_val = self.run.evaluate().clone()
            self.diverged = False
            self.history: dict[str, list[float]] = {"val": [], "train": [], "lr": []}
            self.diverged_at = -1
            self.lr = float(config[LR])

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            # Tune reuses this actor for another member (or an exploited copy, whose
            # donor state it loads next): start afresh, as a new actor would.
            self.config = new_config
            self.setup(new_config)
            return True

        def step(self) -> dict[str, Any]:
            self.lr = float(self.config[LR])
            step = len(self.history["val"])
            outcome = run_interval(
                self.run,
                self.k,
                first_val=self.first_val,
                progress=torch.tensor([(step + 1) / self.config["n_intervals"]]),
                seen=torch.ones(1, dtype=torch.bool),  # PBT ranks members on every interval
                decision={LR: torch.tensor([self.lr], dtype=torch.float32)},
                reward_config=self.reward_config,
            )
            if not self.diverged and bool(outcome.diverged[0]):
                self.diverged, self.diverged_at = True, step
            value = float(outcome.val[0])
            self.history["val"].append(value)
            self.history["train"].append(float(outcome.stats.train_loss[0]))
            self.history["lr"].append(self.lr)
            objective, _ = objective_of(
                np.array([value]),
                self.first_val.numpy(),
                np.array([self.diverged]),
                self.reward_config,
            )
            return {
                METRIC: float(objective[0]),
                "val_loss": value,
                LR: self.lr,
                "interval": step + 1,
            }

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            state = {
                "run": self.run,
                "first_val": self.first_val,
                "diverged": self.diverged,
                "diverged_at": self.diverged_at,
                "history": self.history,
            }
            # Our own trial state, read back only by this experiment's members.
            path = os.path.join(checkpoint_dir, STATE_FILE)
            with open(path + ".tmp", "wb") as f:
                pickle.dump(state, f)
            os.replace(path + ".tmp", path)

        def load_checkpoint(self, checkpoint: Any) -> None:
            with open(os.path.join(checkpoint, STATE_FILE), "rb") as f:
                state = pickle.load(f)
            self.run = state["run"]
            self.first_val = state["first_val"]
            self.diverged = state["diverged"]
            self.diverged_at = state["diverged_at"]
            self.history = {k: list(v) for k, v in state["history"].items()}

    return PBTMember


# ----------------------------------------------------------------------------- running it


@contextlib.contextmanager
def _quiet_tune() -> Any:
    """Silence Tune's per-perturbation INFO lines and its experiment box (printed
    to stdout even at ``verbose=0``); warnings and errors still reach stderr."""
    loggers = [logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


MIN_MEMBER_CPUS = 0.01
"""Tune rejects a zero-resource trial; this much is always placeable in practice."""


def _member_cpus(config: PBTConfig) -> float:
    """CPUs per member: the configured value, else the cluster's CPUs shared by the
    population (at most 1 each, so that all members can run at once)."""
    if config.cpus_per_member > 0:
        return config.cpus_per_member
    import ray

    if ray.get_runtime_context().get_task_id() is not None:
        # Inside a Ray task or actor (e.g. a benchmark work item under `ray_map`)
        # that holds CPUs already: members reserving more could wait on their
        # own parents for ever, so they share the parent's cores instead.
        return MIN_MEMBER_CPUS
    total = ray.cluster_resources().get("CPU", 1.0)
    share = math.floor(100 * total / config.population_size) / 100
    return max(MIN_MEMBER_CPUS, min(1.0, share))


def _start_lr(
    task: Any, initial_lr: float | None, initial_hparams: Mapping[str, float] | None
) -> float:
    if initial_lr is not None:
        return float(initial_lr)
    if initial_hparams and LR in initial_hparams:
        return float(initial_hparams[LR])
    from agents.controllers.schedules import default_constant_hparams

    defaults = default_constant_hparams(task)
    if LR in defaults:
        return float(defaults[LR])
    run = task.build([0])
    return float(run.get_hyperparameters()[LR][0])


def pbt_one_seed(
    task: Any,
    seed: int,
    config: PBTConfig = DEFAULT_PBT,
    initial_lr: float | None = None,
    initial_hparams: Mapping[str, float] | None = None,
    reward_config: RewardConfig | None = None,
) -> dict[str, Any]:
    """Run one population on ``task.build([seed])``; the best member at the end.

    Returns:
        ``{"first_val", "val", "train", "lr", "diverged", "diverged_at",
        "objective", "n_intervals", "member_lrs"}`` of the final best member
        (curves over its lineage, one value per interval).
    """
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from agents.common.ray_backend import ensure_ray

    ensure_ray(config.ray_address)
    n_intervals = config.member_intervals(int(task.control_steps))
    start_lr = _start_lr(task, initial_lr, initial_hparams)
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise ConfigError(f"the start learning rate must be a finite number > 0, got {start_lr!r}")
    lo, hi = config.search_decades
    interval = config.interval(int(task.control_steps))
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=interval,
        hyperparam_mutations={LR: tune.loguniform(start_lr * 10.0**lo, start_lr * 10.0**hi)},
        quantile_fraction=config.quantile_fraction,
        resample_probability=config.resample_probability,
        perturbation_factors=config.perturbation_factors,
        log_config=False,
    )
    member_lrs = config.initial_lrs(start_lr)
    param_space = {
        LR: tune.grid_search(member_lrs),
        "task": task,
        "seed": int(seed),
        "n_intervals": n_intervals,
        "initial_hparams": {k: v for k, v in dict(initial_hparams or {}).items() if k != LR},
        "reward_config": reward_config,
    }
    cpus = _member_cpus(config)
    trainable = tune.with_resources(_trainable_class(), {"cpu": cpus})
    storage = tempfile.mkdtemp(prefix="hpo_rl_pbt_")
    # Tune's explore draws from the driver's `random`; seed it, then put it back.
    saved_random = random.getstate()
    random.seed(config.seed * 1_000_003 + int(seed))
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="min", scheduler=scheduler, num_samples=1, reuse_actors=True
            ),
            run_config=tune.RunConfig(
                name="pbt",
                storage_path=storage,
                stop={"training_iteration": n_intervals},
                # Exploit copies a donor's latest checkpoint: take one at every
                # perturbation (they are small, and the storage is deleted below).
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=interval, checkpoint_at_end=True
                ),
                verbose=0,
            ),
        )
        with _quiet_tune():
            results = tuner.fit()
        errors = results.errors
        if errors:
            raise RuntimeError(
                f"{len(errors)} PBT member(s) failed; first error: {errors[0]!r}"
            ) from errors[0]
        best = results.get_best_result(metric=METRIC, mode="min", scope="last")
        if best.checkpoint is None:
            raise RuntimeError("the best PBT member has no final checkpoint (Tune did not save it)")
        with (
            best.checkpoint.as_directory() as path,
            open(os.path.join(path, STATE_FILE), "rb") as f,
        ):
            state = pickle.load(f)
        objective = float((best.metrics or {})[METRIC])
    finally:
        random.setstate(saved_random)
        shutil.rmtree(storage, ignore_errors=True)
    return {
        "first_val": float(state["first_val"][0]),
        "val": state["history"]["val"],
        "train": state["history"]["train"],
        "lr": state["history"]["lr"],
        "diverged": bool(state["diverged"]),
        "diverged_at": int(state["diverged_at"]),
        "objective": objective,
        "n_intervals": n_intervals,
        "member_lrs": member_lrs,
    }


def pbt_rollout(
    task: Any,
    seeds: Sequence[int],
    config: PBTConfig = DEFAULT_PBT,
    *,
    val_every: int = 1,
    initial_lr: float | None = None,
    initial_hparams: Mapping[str, float] | None = None,
    reward_config: RewardConfig | None = None,
) -> RolloutResult:
    """PBT on every seed, as an `agents.controllers.rollout.RolloutResult` (one row per seed).

    ``val_every`` is accepted for the benchmark's runner interface and ignored:
    PBT always ranks members on the validation objective of every interval.
    ``final_objective`` follows `rollout`: the final validation objective, or
    the divergence value ``first_val * divergence_factor`` if the best member's
    lineage diverged or ended non-finite.
    """
    from agents.controllers.rollout import RolloutResult

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("pbt_rollout needs at least one seed, got an empty sequence")
    reward = reward_config or RewardConfig()
    t = int(task.control_steps)
    outs = [
        pbt_one_seed(task, s, config, initial_lr, initial_hparams, reward_config) for s in seeds
    ]

    def curve(key: str) -> np.ndarray:
        out = np.full((len(seeds), t), np.nan)
        for i, o in enumerate(outs):
            values = o[key][:t]
            out[i, : len(values)] = values
        return out

    first_val = np.array([o["first_val"] for o in outs])
    final_val = np.array([o["val"][-1] for o in outs], dtype=np.float64)
    final_objective, diverged = objective_of(
        final_val, first_val, np.array([o["diverged"] for o in outs]), reward
    )
    return RolloutResult(
        method="pbt",
        task=str(getattr(task, "name", type(task).__name__)),
        family=str(getattr(task, "family", "")),
        seeds=seeds,
        first_val=first_val,
        val_curve=curve("val"),
        train_curve=curve("train"),
        hparams={LR: curve("lr")},
        final_val=final_val,
        final_objective=final_objective,
        diverged=diverged,
        diverged_at=np.array([o["diverged_at"] for o in outs], dtype=np.int64),
        updates_per_step=int(task.updates_per_step),
        initial_lr=initial_lr,
    )


# ----------------------------------------------------------------------------- benchmark hook


@dataclasses.dataclass(frozen=True)
class PBTRunner:
    """The benchmark's runner interface around `pbt_rollout` (picklable: work items may
    run as Ray tasks)."""

    config: PBTConfig = DEFAULT_PBT

    def __call__(
        self,
        task: Any,
        seeds: Sequence[int],
        *,
        val_every: int = 1,
        initial_lr: float | None = None,
        initial_hparams: Mapping[str, float] | None = None,
    ) -> RolloutResult:
        return pbt_rollout(
            task,
            seeds,
            self.config,
            val_every=val_every,
            initial_lr=initial_lr,
            initial_hparams=initial_hparams,
        )


def pbt_method(config: PBTConfig = DEFAULT_PBT, name: str = "pbt", in_sweep: bool = False) -> Any:
    """PBT as a benchmark method (`agents.benchmark.methods.MethodSpec`).

    Left out of the robustness sweep by default: each sweep start would cost
    another population per seed.
    """
    from agents.benchmark.methods import MethodSpec

    spread = config.init_spread_decades
    return MethodSpec(
        name,
        runner=PBTRunner(config),
        compute_multiple=config.compute_multiple(),
        in_sweep=in_sweep,
        description=(
            f"Population Based Training (Ray Tune), {config.population_size} members from "
            f"start lr x 10^[-{spread:g}, {spread:g}], {config.accounting} accounting "
            f"({config.compute_multiple():g}x a run's compute)"
        ),
    )
