"""Drive hyperparameter controllers on batched runs, and the benchmark protocol.

`rollout` is the one loop every method goes through: the learned policy
(`PolicyController`), every baseline of `agents.baselines`, and the periodic
held-out evaluation of the trainer. It follows `hpo_env.core.EpisodeEngine`
step for step (the same ``evaluate`` calls, the same ``StepStats`` with the
same progress and validation cadence), so a policy sees here exactly the
observations it saw during meta-training.

The protocol (`BenchmarkConfig`, `run_benchmark`): held-out tasks, fresh run
seeds (`eval_seeds`, disjoint from meta-training and from the trainer's
periodic evaluation), every method starting from the task's default
hyperparameters; a best-of-grid constant learning rate as the oracle each
final objective is divided by; per-(task, seed) win rates of the policy;
interquartile means with stratified bootstrap CIs; and a robustness sweep
over initial learning rates. Work items (`WorkItem` -> `run_work_item`) stack
several methods into one batched run (`StackedController`; runs never
interact) and map locally or as Ray tasks.

Example:
    >>> from agents.baselines import ConstantController  # doctest: +SKIP
    >>> from tests.hpo_env.tiny_task import TinyRegressionTask  # doctest: +SKIP
    >>> result = rollout(ConstantController(), TinyRegressionTask(), seeds=[1, 2])  # doctest: +SKIP
    >>> result.final_objective.shape  # doctest: +SKIP
    (2,)
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from hpo_env.features import FeatureExtractor
from hpo_env.protocol import Task
from hpo_env.reward import RewardConfig, detect_divergence
from hpo_env.space import HyperparameterSpace
from hpo_env.stats import StepStats

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
        raise ValueError(f"expected n_seeds >= 1 and offset >= 0, got {n_seeds=}, {offset=}")
    return [EVAL_SEED_BASE + offset + i for i in range(n_seeds)]


# ----------------------------------------------------------------------------- controllers


@dataclasses.dataclass(frozen=True)
class RolloutContext:
    """What a controller learns about the runs before its first decision."""

    task: Task
    """The task being trained."""
    n_runs: int
    """B, the number of runs decided for at once."""
    control_steps: int
    """Decisions per run (T)."""
    updates_per_step: int
    """Inner updates per decision (K)."""
    val_every: int
    """Cadence (in decisions) at which ``StepStats.val_loss`` is filled; 0 = never."""
    initial_hparams: Mapping[str, Tensor]
    """The runs' hyperparameters before the first decision, each float32 [B]."""
    first_val: Tensor
    """Validation objective before any update, float32 [B]."""


@runtime_checkable
class Controller(Protocol):
    """Decides B runs' hyperparameters once per control interval.

    ``reset`` is called once per rollout; then ``decide(None)`` before the
    first interval and ``decide(stats)`` after each later one, where ``stats``
    carries ``progress``, ``val_loss`` (NaN off the validation cadence) and
    ``hparams`` (the values in effect during that interval). ``decide``
    returns the values for the next interval: a subset of the run's
    hyperparameters, each a [B] tensor (hyperparameters left out keep their value).
    """

    name: str

    def reset(self, context: RolloutContext) -> None: ...

    def decide(self, stats: StepStats | None) -> Mapping[str, Tensor]: ...


class PolicyLike(Protocol):
    """The surface of `agents.policy.TuningPolicy` that evaluation uses."""

    space: HyperparameterSpace

    def feature_extractor(self, n_runs: int) -> FeatureExtractor: ...

    def act(self, obs: Any, deterministic: bool = True) -> Any: ...


def _in_space(values: Mapping[str, Tensor], space: HyperparameterSpace) -> dict[str, Tensor]:
    # Exactly EpisodeEngine._current_hparams: hyperparameters the run lacks stay absent.
    return {k: v for k, v in values.items() if k in space.names}


class PolicyController:
    """A tuning policy driven exactly as `hpo_env.core.EpisodeEngine` drives it.

    First decision: ``FeatureExtractor.reset`` from the run's hyperparameters.
    Later decisions: ``FeatureExtractor.observe`` of the interval's statistics,
    with ``hparams`` replaced by the values this controller applied (as the
    engine does). Actions go through ``space.apply`` on the run's current
    values; hyperparameters a run does not use are skipped.

    Args:
        policy: A `TuningPolicy` (or anything with ``space``,
            ``feature_extractor(n_runs)`` and ``act(obs, deterministic)``).
        deterministic: Use the policy's mean action (evaluation) or sample.
        name: Label in reports.
    """

    def __init__(
        self, policy: PolicyLike, deterministic: bool = True, name: str = "policy"
    ) -> None:
        for attr in ("space", "feature_extractor", "act"):
            if not hasattr(policy, attr):
                raise TypeError(
                    f"policy must have .space, .feature_extractor(n_runs) and .act(obs), "
                    f"got {type(policy).__name__} without .{attr}"
                )
        self.policy = policy
        self.deterministic = deterministic
        self.name = name
        self.space: HyperparameterSpace = policy.space
        self.features: FeatureExtractor | None = None
        self.context: RolloutContext | None = None
        self._applied: dict[str, Tensor] = {}
        self.last_obs: Tensor | None = None
        """The observation behind the latest decision, [B, D] (for parity checks)."""

    def __repr__(self) -> str:
        return (
            f"PolicyController(deterministic={self.deterministic}, space={list(self.space.names)})"
        )

    def reset(self, context: RolloutContext) -> None:
        self.context = context
        self.features = self.policy.feature_extractor(context.n_runs)
        self._applied = {}
        self.last_obs = None

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        if self.features is None or self.context is None:
            raise RuntimeError("PolicyController.decide called before reset(context)")
        if stats is None:
            current = _in_space(self.context.initial_hparams, self.space)
            obs = self.features.reset(current)
        else:
            current = _in_space(stats.hparams, self.space)
            obs = self.features.observe(stats.replace(hparams=self._applied))
        self.last_obs = obs
        actions = self.policy.act(obs.numpy(), deterministic=self.deterministic)
        actions_t = torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(
            self.context.n_runs, -1
        )
        self._applied = self.space.apply(current, actions_t)
        return self._applied


# ----------------------------------------------------------------------------- rollout


@dataclasses.dataclass
class RolloutResult:
    """Everything one controller did to B runs of one task (numpy arrays, run axis first).

    A diverged run's ``final_objective`` is its *divergence value*,
    ``first_val * reward_config.divergence_factor``: the bound past which a
    loss counts as diverged, so it is finite, never better than any run that
    did not diverge (those end at or below the bound), and ranks last.
    """

    method: str
    task: str
    family: str
    seeds: list[int]
    first_val: np.ndarray
    """[B] validation objective before any update."""
    val_curve: np.ndarray
    """[B, T] validation objective after each interval (NaN/inf kept as measured)."""
    train_curve: np.ndarray
    """[B, T] mean training loss of each interval."""
    hparams: dict[str, np.ndarray]
    """name -> [B, T] value in effect during each interval."""
    final_val: np.ndarray
    """[B] validation objective after the last interval, as measured."""
    final_objective: np.ndarray
    """[B] ``final_val``, or the divergence value for diverged runs (always finite)."""
    diverged: np.ndarray
    """[B] bool."""
    diverged_at: np.ndarray
    """[B] index of the interval where divergence was detected, -1 if never."""
    updates_per_step: int = 1
    initial_lr: float | None = None

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists; non-finite numbers become None)."""

        def clean(a: np.ndarray) -> Any:
            a = np.asarray(a, dtype=np.float64)
            return np.where(np.isfinite(a), a, np.nan).tolist()

        out: dict[str, Any] = {
            "method": self.method,
            "task": self.task,
            "family": self.family,
            "seeds": list(self.seeds),
            "initial_lr": self.initial_lr,
            "updates_per_step": self.updates_per_step,
            "first_val": clean(self.first_val),
            "val_curve": clean(self.val_curve),
            "train_curve": clean(self.train_curve),
            "hparams": {k: clean(v) for k, v in self.hparams.items()},
            "final_val": clean(self.final_val),
            "final_objective": clean(self.final_objective),
            "diverged": self.diverged.astype(bool).tolist(),
            "diverged_at": self.diverged_at.astype(int).tolist(),
        }
        return _nan_to_none(out)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def task_default_hparams(task: Task) -> dict[str, float] | None:
    """``task.default_hparams()`` if the task defines it, else None."""
    method = getattr(task, "default_hparams", None)
    if method is None:
        return None
    return {str(k): float(v) for k, v in dict(method()).items()}


def rollout(
    controller: Controller,
    task: Task,
    seeds: Sequence[int],
    val_every: int = 1,
    initial_lr: float | None = None,
    initial_hparams: Mapping[str, float] | None = None,
    reward_config: RewardConfig | None = None,
) -> RolloutResult:
    """Train ``task.build(seeds)`` for ``task.control_steps`` decisions of ``controller``.

    Per decision: ``hparams = controller.decide(stats or None)`` →
    ``run.set_hyperparameters`` → ``run.train(task.updates_per_step)`` →
    ``val = run.evaluate()``, in the order and with the statistics of
    `hpo_env.core.EpisodeEngine`. The validation objective is measured after
    every interval; the controller's ``stats.val_loss`` only carries it every
    ``val_every`` decisions (0 = never), like the environment's observation.

    Args:
        controller: The method deciding the hyperparameters.
        task: The task; ``task.build(seeds)`` makes the B runs.
        seeds: One run seed per run (see `eval_seeds` for held-out ones).
        val_every: Validation cadence seen by the controller.
        initial_lr: If given, every run starts at this learning rate.
        initial_hparams: If given, every run starts at these values (e.g. the
            task's defaults; names the run does not accept are skipped).
            ``initial_lr`` wins over its ``learning_rate``.
        reward_config: Divergence rule (``RewardConfig().divergence_factor`` by default).

    Returns:
        The curves, hyperparameter trajectories and final objectives of every run.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("rollout needs at least one seed, got an empty sequence")
    _check_initial_lr(initial_lr)
    start = _start_values(initial_hparams, initial_lr)
    per_run = {k_: [v] * len(seeds) for k_, v in start.items()}
    result = _rollout_core(controller, task, seeds, val_every, per_run, reward_config)
    result.initial_lr = initial_lr
    return result


def _check_initial_lr(initial_lr: float | None) -> None:
    if initial_lr is not None and not (np.isfinite(initial_lr) and initial_lr > 0):
        raise ValueError(f"initial_lr must be a finite number > 0, got {initial_lr!r}")


def _start_values(
    initial_hparams: Mapping[str, float] | None, initial_lr: float | None
) -> dict[str, float]:
    start = {str(k): float(v) for k, v in (initial_hparams or {}).items()}
    if initial_lr is not None:
        start["learning_rate"] = float(initial_lr)
    return start


def _rollout_core(
    controller: Controller,
    task: Task,
    seeds: list[int],
    val_every: int,
    start: Mapping[str, Sequence[float]],
    reward_config: RewardConfig | None,
) -> RolloutResult:
    """`rollout` with per-run start values (name -> one value per run)."""
    if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 0:
        raise ValueError(f"val_every must be an int >= 0 (0 = never), got {val_every!r}")
    config = reward_config or RewardConfig()
    n, n_steps, k = len(seeds), int(task.control_steps), int(task.updates_per_step)
    run = task.build(seeds)
    start = {k_: v for k_, v in start.items() if k_ in run.hparam_names}
    if start:
        run.set_hyperparameters(
            {k_: torch.as_tensor(list(v), dtype=torch.float32) for k_, v in start.items()}
        )

    first_val = run.evaluate().clone()
    controller.reset(
        RolloutContext(
            task=task,
            n_runs=n,
            control_steps=n_steps,
            updates_per_step=k,
            val_every=val_every,
            initial_hparams={k_: v.clone() for k_, v in run.get_hyperparameters().items()},
            first_val=first_val.clone(),
        )
    )

    val_curve = np.full((n, n_steps), np.nan)
    train_curve = np.full((n, n_steps), np.nan)
    trajectory = {name: np.full((n, n_steps), np.nan) for name in run.hparam_names}
    diverged = torch.zeros(n, dtype=torch.bool)
    diverged_at = np.full(n, -1, dtype=np.int64)
    stats: StepStats | None = None
    val = first_val
    for step in range(1, n_steps + 1):
        decision = controller.decide(stats)
        if decision:
            run.set_hyperparameters(
                {
                    k_: torch.as_tensor(v, dtype=torch.float32).reshape(-1)
                    for k_, v in decision.items()
                }
            )
        in_effect = run.get_hyperparameters()
        raw = run.train(k)
        val = run.evaluate()
        # Same progress and validation cadence as EpisodeEngine.step.
        progress = torch.full((n,), step / n_steps, dtype=torch.float32)
        seen = val_every > 0 and step % val_every == 0
        observed = val if seen else torch.full_like(val, float("nan"))
        stats = raw.replace(progress=progress, val_loss=observed, hparams=run.get_hyperparameters())
        new_div = detect_divergence(stats, val, first_val, config) & ~diverged
        diverged_at[new_div.numpy()] = step - 1
        diverged |= new_div
        val_curve[:, step - 1] = val.double().numpy()
        train_curve[:, step - 1] = stats.train_loss.double().numpy()
        for name, value in in_effect.items():
            if name in trajectory:
                trajectory[name][:, step - 1] = value.double().numpy()

    final_val = val.double().numpy().copy()
    penalty = first_val.double().numpy() * config.divergence_factor
    div = diverged.numpy()
    final_objective = np.where(div | ~np.isfinite(final_val), penalty, final_val)
    return RolloutResult(
        method=getattr(controller, "name", type(controller).__name__),
        task=str(getattr(task, "name", type(task).__name__)),
        family=str(getattr(task, "family", "")),
        seeds=seeds,
        first_val=first_val.double().numpy(),
        val_curve=val_curve,
        train_curve=train_curve,
        hparams=trajectory,
        final_val=final_val,
        final_objective=final_objective,
        diverged=div | ~np.isfinite(final_val),
        diverged_at=diverged_at,
        updates_per_step=k,
    )


# ----------------------------------------------------------------------------- several methods in one batch


class StackedController:
    """Several controllers, each deciding for its own contiguous block of runs.

    Runs of a batched run never interact, so the methods of a benchmark can
    share one batched run (B = methods x seeds) and cost little more than one.

    Args:
        controllers: One controller per block.
        block_sizes: Runs per block, in order; they sum to B.
    """

    name = "stacked"

    def __init__(self, controllers: Sequence[Controller], block_sizes: Sequence[int]) -> None:
        if len(controllers) != len(block_sizes) or not controllers:
            raise ValueError(
                f"expected one block size per controller, got {len(controllers)} controllers "
                f"and {len(block_sizes)} block sizes"
            )
        self.controllers = list(controllers)
        bounds = np.cumsum([0, *[int(b) for b in block_sizes]])
        self.blocks = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.context: RolloutContext | None = None

    def reset(self, context: RolloutContext) -> None:
        if self.blocks[-1].stop != context.n_runs:
            raise ValueError(
                f"block sizes sum to {self.blocks[-1].stop}, but the batch has {context.n_runs} runs"
            )
        self.context = context
        for controller, block in zip(self.controllers, self.blocks):
            controller.reset(
                dataclasses.replace(
                    context,
                    n_runs=block.stop - block.start,
                    initial_hparams={k: v[block] for k, v in context.initial_hparams.items()},
                    first_val=context.first_val[block],
                )
            )

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        if self.context is None:
            raise RuntimeError("StackedController.decide called before reset(context)")
        current = self.context.initial_hparams if stats is None else stats.hparams
        out: dict[str, Tensor] = {}
        for controller, block in zip(self.controllers, self.blocks):
            sub = None if stats is None else stats.slice(block)
            for name, value in controller.decide(sub).items():
                if name not in out:
                    out[name] = current[name].float().clone()
                out[name][block] = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
        return out


def _split_result(
    result: RolloutResult, blocks: Sequence[slice], labels: Sequence[str]
) -> list[RolloutResult]:
    parts = []
    for block, label in zip(blocks, labels):
        parts.append(
            dataclasses.replace(
                result,
                method=label,
                seeds=result.seeds[block],
                first_val=result.first_val[block],
                val_curve=result.val_curve[block],
                train_curve=result.train_curve[block],
                hparams={k: v[block] for k, v in result.hparams.items()},
                final_val=result.final_val[block],
                final_objective=result.final_objective[block],
                diverged=result.diverged[block],
                diverged_at=result.diverged_at[block],
            )
        )
    return parts


# ----------------------------------------------------------------------------- statistics


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``)."""
    values = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = values.shape[axis]
    cut = int(0.25 * n)
    kept = np.take(values, np.arange(cut, n - cut), axis=axis)
    return np.asarray(kept.mean(axis=axis))


def win_scores(policy: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """1 where the policy's final objective is strictly lower, 0.5 on ties, 0 otherwise."""
    policy, baseline = np.asarray(policy, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if policy.shape != baseline.shape:
        raise ValueError(f"expected equal shapes, got {policy.shape} and {baseline.shape}")
    return np.where(policy < baseline, 1.0, np.where(policy == baseline, 0.5, 0.0))


def win_rate(policy: np.ndarray, baseline: np.ndarray) -> float:
    """Fraction of (task, seed) pairs where the policy ends lower (ties count half)."""
    return float(win_scores(policy, baseline).mean())


def bootstrap_ci(
    table: np.ndarray,
    statistic: Any = iqm,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over a [tasks, seeds] table.

    Two-level (stratified) resampling: draw tasks with replacement, then
    seeds with replacement within each drawn task; ``statistic(samples,
    axis=-1)`` is applied to each resample's flattened values.

    Args:
        table: [n_tasks, n_seeds] values (e.g. ratios to the oracle).
        statistic: A numpy reduction taking ``axis`` (`iqm`, ``np.median``, ``np.mean``).
        n_boot: Number of resamples.
        seed: Seed of the numpy generator (results are reproducible).
        confidence: Coverage of the interval.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"expected a non-empty [tasks, seeds] table, got shape {table.shape}")
    if not 0 < confidence < 1 or n_boot < 1:
        raise ValueError(
            f"expected 0 < confidence < 1 and n_boot >= 1, got {confidence=}, {n_boot=}"
        )
    rng = np.random.default_rng(seed)
    n_tasks, n_seeds = table.shape
    task_idx = rng.integers(0, n_tasks, size=(n_boot, n_tasks))
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_tasks, n_seeds))
    samples = table[task_idx[..., None], seed_idx].reshape(n_boot, -1)
    stats = np.asarray(statistic(samples, axis=-1), dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


# ----------------------------------------------------------------------------- the protocol


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """The held-out evaluation protocol (`FULL_BENCHMARK` and `QUICK_BENCHMARK` are presets)."""

    tasks: tuple[str, ...] = ()
    """Task names for `tasks.distribution.task_by_name`; empty = every ``list_tasks("heldout")``."""
    n_seeds: int = 5
    """Run seeds per task: ``eval_seeds(n_seeds, seed_offset)``, never used in meta-training."""
    seed_offset: int = BENCHMARK_SEED_OFFSET
    """Offset into the evaluation seeds (use another to get a disjoint evaluation set)."""
    methods: tuple[str, ...] = ()
    """Baselines from `agents.baselines.available_methods` to run; empty = all registered."""
    plugins: tuple[str, ...] = ()
    """Modules imported first, which may `agents.baselines.register_method` more methods
    (e.g. Population Based Training over Ray Tune)."""
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
    """``local`` (this process) or ``ray`` (work items as Ray tasks, `agents.ray_backend.ray_map`)."""
    ray_address: str | None = None
    """Ray cluster address for ``backend="ray"`` (None: a local Ray)."""
    quick: bool = False
    """A smoke test (CI): reports say so, and the numbers are not for quoting."""

    def __post_init__(self) -> None:
        from agents.config import check_field_types

        check_field_types(self)
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if self.grid_size < 2:
            raise ValueError(f"grid_size must be >= 2, got {self.grid_size}")
        if self.grid_size < 8 and not self.quick:
            import warnings

            warnings.warn(
                f"grid_size={self.grid_size} < 8: the best-of-grid oracle is coarse, so ratios to it "
                "flatter every method (fine for a smoke test: set quick=True; not for reported numbers)",
                stacklevel=2,
            )
        lo, hi = self.grid_decades
        if not lo < 0 < hi:
            raise ValueError(
                f"grid_decades must straddle the default (lo < 0 < hi), got {self.grid_decades}"
            )
        if any(not (np.isfinite(v) and v > 0) for v in self.sweep_lrs):
            raise ValueError(f"sweep_lrs must be finite numbers > 0, got {self.sweep_lrs}")
        if not self.robustness_factor > 1:
            raise ValueError(f"robustness_factor must be > 1, got {self.robustness_factor}")
        if (
            self.val_every < 0
            or self.n_bootstrap < 1
            or self.arms_per_item < 0
            or self.seeds_per_item < 0
        ):
            raise ValueError(
                "expected val_every >= 0, n_bootstrap >= 1, arms_per_item >= 0, seeds_per_item >= 0, got "
                f"{self.val_every=}, {self.n_bootstrap=}, {self.arms_per_item=}, {self.seeds_per_item=}"
            )
        if self.backend not in ("local", "ray"):
            from agents.config import unknown_name_error

            raise unknown_name_error("backend", self.backend, ["local", "ray"])


FULL_BENCHMARK = BenchmarkConfig()
"""Every held-out task, 5 seeds, a 19-point grid (quarter decades), the 5-point sweep: the README table."""
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


def default_lr_of(task: Any) -> float:
    """The task's default learning rate (``default_hparams()``, else SB3's 3e-4 for control tasks)."""
    from agents.baselines import LR, default_constant_hparams

    values = default_constant_hparams(task)
    if LR not in values:
        raise ValueError(
            f"task {getattr(task, 'name', task)!r} has no default learning rate: give it "
            "default_hparams() returning {'learning_rate': ...}"
        )
    return float(values[LR])


def grid_lrs_for(task: Any, config: BenchmarkConfig) -> list[float]:
    """The oracle's constant learning rates: log-spaced around the task's default."""
    lo, hi = config.grid_decades
    return [float(default_lr_of(task) * 10.0**d) for d in np.linspace(lo, hi, config.grid_size)]


def sweep_lrs_for(task: Any, config: BenchmarkConfig) -> list[float]:
    """The sweep's initial learning rates for ``task``.

    ``config.sweep_lrs`` times ``10**min(0, ceil(log10(default_lr) + 2))``:
    unchanged for tasks whose default is >= 1e-3 (every family shipped now:
    SGD at 5e-2, Adam and the control learner at 3e-3), shifted down a decade
    at a time for smaller defaults, so the hottest start stays around 100x the
    default rather than far beyond anything a user would try.
    """
    exponent = min(0, int(np.ceil(np.log10(default_lr_of(task)) + 2.0 - 1e-9)))
    return [float(v * 10.0**exponent) for v in sorted(config.sweep_lrs)]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One method in one setting, run on every seed of a work item."""

    label: str
    """``policy``, a method name, or ``grid@<lr>``."""
    kind: str
    """``policy``, ``method`` or ``grid``."""
    method: Any = None
    """The `agents.baselines.MethodSpec` (kind ``method``)."""
    grid_lr: float | None = None
    """The constant learning rate (kind ``grid``)."""
    sweep_lr: float | None = None
    """Initial learning rate in the robustness sweep; None = the main protocol (task defaults)."""


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """A picklable unit of benchmark work: arms x seeds of one task, as one batched run."""

    task: Any
    seeds: tuple[int, ...]
    arms: tuple[Arm, ...]
    val_every: int = 1
    policy: Any = None
    """A bundle path or name (loaded in the worker) or a policy object."""
    task_label: str | None = None
    """The task's name in reports (e.g. ``digits_mlp:heldout``); default ``task.name``."""

    @property
    def label(self) -> str:
        return self.task_label or str(getattr(self.task, "name", self.task))

    def __repr__(self) -> str:
        labels = [
            a.label if a.sweep_lr is None else f"{a.label}@start{a.sweep_lr:g}" for a in self.arms
        ]
        return f"WorkItem(task={self.label!r}, seeds={list(self.seeds)}, arms={labels})"


_POLICY_CACHE: dict[str, Any] = {}


def load_policy(ref: Any) -> Any:
    """A policy from a bundle path or shipped name (cached per process), or ``ref`` itself."""
    if not isinstance(ref, str):
        return ref
    if ref not in _POLICY_CACHE:
        from agents.policy import TuningPolicy

        _POLICY_CACHE[ref] = TuningPolicy.load(ref)
    return _POLICY_CACHE[ref]


def _arm_controller(arm: Arm, task: Any, policy: Any) -> Any:
    from agents.baselines import ConstantController

    if arm.kind == "policy":
        return PolicyController(load_policy(policy), name="policy")
    if arm.kind == "grid":
        return ConstantController({"learning_rate": float(arm.grid_lr)}, name=arm.label)  # type: ignore[arg-type]
    return arm.method.factory(task)


def run_work_item(item: WorkItem) -> dict[str, Any]:
    """Run one work item; picklable in and out, so it maps locally or as a Ray task.

    Returns:
        ``{"task", "family", "seeds", "wall_s", "records"}`` with one record per
        arm: the arm's ``label``, ``kind``, ``grid_lr``, ``sweep_lr`` and its
        `RolloutResult.to_dict` fields.
    """
    import time

    from agents.baselines import default_constant_hparams

    started = time.perf_counter()
    task, seeds = item.task, [int(s) for s in item.seeds]
    defaults = default_constant_hparams(task)
    results: list[tuple[Arm, RolloutResult]] = []
    stackable = [a for a in item.arms if not (a.kind == "method" and a.method.runner is not None)]
    for arm in item.arms:
        if arm not in stackable:
            run = arm.method.runner(
                task,
                seeds,
                val_every=item.val_every,
                initial_lr=arm.sweep_lr,
                initial_hparams=defaults,
            )
            results.append((arm, run))
    if stackable:
        controllers = [_arm_controller(a, task, item.policy) for a in stackable]
        start: dict[str, list[float]] = {}
        for arm in stackable:
            values = _start_values(defaults, arm.sweep_lr)
            for name, value in values.items():
                start.setdefault(name, []).extend([value] * len(seeds))
        if any(len(v) != len(seeds) * len(stackable) for v in start.values()):
            raise ValueError(f"arms of {item!r} start from different sets of hyperparameters")
        stacked = StackedController(controllers, [len(seeds)] * len(stackable))
        whole = _rollout_core(stacked, task, seeds * len(stackable), item.val_every, start, None)
        for arm, part in zip(
            stackable, _split_result(whole, stacked.blocks, [a.label for a in stackable])
        ):
            part.initial_lr = arm.sweep_lr
            results.append((arm, part))
    records = []
    for arm, result in results:
        record = result.to_dict()
        record.update(
            task=item.label,
            task_full_name=result.task,
            label=arm.label,
            kind=arm.kind,
            grid_lr=arm.grid_lr,
            sweep_lr=arm.sweep_lr,
        )
        records.append(record)
    return {
        "task": item.label,
        "family": str(getattr(task, "family", "")),
        "seeds": seeds,
        "wall_s": time.perf_counter() - started,
        "records": records,
    }


def resolve_tasks(names: Sequence[str]) -> dict[str, Any]:
    """Report label -> task object (empty ``names`` = every held-out task of `tasks.distribution`)."""
    from tasks.distribution import list_tasks, task_by_name

    return {name: task_by_name(name) for name in (names or list_tasks("heldout"))}


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register benchmark methods (``BenchmarkConfig.plugins``)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"benchmark plugin {name!r} could not be imported ({exc}); expected an importable "
                "module that calls agents.baselines.register_method"
            ) from exc


def _method_specs(names: Sequence[str]) -> list[Any]:
    from agents.baselines import available_methods, get_method

    return [get_method(name) for name in (names or available_methods())]


def make_work_items(
    config: BenchmarkConfig, tasks: Sequence[Any] | Mapping[str, Any], policy: Any
) -> list[WorkItem]:
    """Every work item of the protocol: per task, the policy, the baselines and the grid
    from the task's defaults, then the policy and the sweep methods from each sweep lr.

    ``tasks`` is a list of tasks or a mapping report label -> task."""
    if not isinstance(tasks, Mapping):
        tasks = {str(getattr(t, "name", t)): t for t in tasks}
    if not tasks:
        raise ValueError("the benchmark needs at least one task, got none")
    specs = _method_specs(config.methods)
    seeds = eval_seeds(config.n_seeds, config.seed_offset)
    seed_chunks = [
        tuple(seeds[i : i + (config.seeds_per_item or len(seeds))])
        for i in range(0, len(seeds), config.seeds_per_item or len(seeds))
    ]
    items = []
    for label, task in tasks.items():
        arms = [Arm("policy", "policy")]
        arms += [Arm(s.name, "method", method=s) for s in specs]
        arms += [Arm(f"grid@{lr:.3g}", "grid", grid_lr=lr) for lr in grid_lrs_for(task, config)]
        for lr in sweep_lrs_for(task, config):
            arms.append(Arm("policy", "policy", sweep_lr=lr))
            arms += [Arm(s.name, "method", method=s, sweep_lr=lr) for s in specs if s.in_sweep]
        size = config.arms_per_item or len(arms)
        for chunk in seed_chunks:
            for i in range(0, len(arms), size):
                items.append(
                    WorkItem(
                        task, chunk, tuple(arms[i : i + size]), config.val_every, policy, label
                    )
                )
    return items


# ----------------------------------------------------------------------------- aggregation

TARGETS = (
    (
        "win_rate_vs_constant_default",
        "policy beats constant-default on >= 80% of (task, seed) pairs",
        0.80,
        ">=",
    ),
    ("win_rate_vs_cosine", "policy beats cosine on >= 60% of (task, seed) pairs", 0.60, ">="),
    (
        "median_ratio_to_oracle",
        "median final validation loss within 1.10x of the oracle",
        1.10,
        "<=",
    ),
    ("robustness", "robustness: >= 80% of sweep runs within 1.25x of the oracle", 0.80, ">="),
)


def _records_table(
    records: Sequence[Mapping[str, Any]],
    task_names: Sequence[str],
    n_seeds_expected: int | None = None,
) -> dict[tuple[str, str, float | None, float | None], dict[str, np.ndarray]]:
    """(task, label, grid_lr, sweep_lr) -> {"final", "diverged"} arrays ordered by seed."""
    out: dict[tuple[str, str, float | None, float | None], dict[str, list[Any]]] = {}
    for rec in records:
        key = (rec["task"], rec["label"], rec["grid_lr"], rec["sweep_lr"])
        entry = out.setdefault(key, {"seeds": [], "final": [], "diverged": []})
        entry["seeds"] += rec["seeds"]
        entry["final"] += rec["final_objective"]
        entry["diverged"] += rec["diverged"]
    table = {}
    for key, entry in out.items():
        order = np.argsort(entry["seeds"])
        table[key] = {
            "seeds": np.asarray(entry["seeds"])[order],
            "final": np.asarray(entry["final"], dtype=np.float64)[order],
            "diverged": np.asarray(entry["diverged"], dtype=bool)[order],
        }
    return table


def summarize(records: Sequence[Mapping[str, Any]], config: BenchmarkConfig) -> dict[str, Any]:
    """Per-method aggregates, win rates, robustness and the targets from run records.

    The oracle of a task is the grid's constant learning rate with the lowest
    mean log final objective over the task's seeds (chosen on the same
    validation objective it is scored on: an upper bound on what tuning one
    constant can do, at ``grid_size`` times the compute). Every ratio is a
    method's final objective over the oracle's on the same (task, seed).
    """
    task_names = list(dict.fromkeys(r["task"] for r in records))
    table = _records_table(records, task_names)
    labels = list(dict.fromkeys(r["label"] for r in records if r["kind"] != "grid"))

    def finals(
        task: str, label: str, sweep_lr: float | None = None
    ) -> dict[str, np.ndarray] | None:
        return table.get((task, label, None, sweep_lr))

    oracle: dict[str, np.ndarray] = {}
    tasks_info: dict[str, Any] = {}
    for task in task_names:
        grid = {k[2]: v for k, v in table.items() if k[0] == task and k[2] is not None}
        if not grid:
            raise ValueError(f"task {task!r} has no best-of-grid records; the oracle needs them")
        scores = {
            lr: float(np.mean(np.log(np.maximum(v["final"], 1e-30)))) for lr, v in grid.items()
        }
        best = min(scores, key=scores.__getitem__)
        oracle[task] = grid[best]["final"]
        family = next(r["family"] for r in records if r["task"] == task)
        sweep = sorted({k[3] for k in table if k[0] == task and k[3] is not None})
        grid_sorted = sorted(grid)
        tasks_info[task] = {
            "family": family,
            "oracle_lr": best,
            "oracle_at_grid_edge": best in (grid_sorted[0], grid_sorted[-1]),
            "grid_lrs": sorted(grid),
            "grid_mean_log_final": {f"{lr:.6g}": scores[lr] for lr in sorted(grid)},
            "sweep_lrs": sweep,
        }

    # The oracle also appears as a method row (ratio 1 by construction).
    for task in task_names:
        table[(task, "best_of_grid", None, None)] = {
            "seeds": table[next(k for k in table if k[0] == task and k[2] is not None)]["seeds"],
            "final": oracle[task],
            "diverged": np.zeros_like(oracle[task], dtype=bool),
        }
    labels.append("best_of_grid")

    per_method: dict[str, Any] = {}
    policy_table = np.stack([finals(t, "policy")["final"] for t in task_names])  # type: ignore[index]
    for label in labels:
        rows = [finals(t, label) for t in task_names]
        if any(r is None for r in rows):
            continue
        final = np.stack([r["final"] for r in rows])  # type: ignore[index]
        diverged = np.stack([r["diverged"] for r in rows])  # type: ignore[index]
        ratio = final / np.stack([oracle[t] for t in task_names])
        ci = bootstrap_ci(ratio, iqm, config.n_bootstrap, config.bootstrap_seed)
        entry: dict[str, Any] = {
            "iqm_ratio": float(iqm(ratio.reshape(-1))),
            "iqm_ratio_ci": list(ci),
            "median_ratio": float(np.median(ratio)),
            "divergence_rate": float(diverged.mean()),
            "ratio": ratio.tolist(),
            "final": final.tolist(),
        }
        if label != "policy":
            wins = win_scores(policy_table, final)
            entry["win_rate_policy_vs"] = float(wins.mean())
            entry["win_rate_policy_vs_ci"] = list(
                bootstrap_ci(wins, np.mean, config.n_bootstrap, config.bootstrap_seed)
            )
            entry["win_rate_policy_vs_per_task"] = {
                t: float(w.mean()) for t, w in zip(task_names, wins)
            }
        per_method[label] = entry

    # Robustness sweep: every (task, sweep lr, seed) run of a method vs the oracle on that (task, seed).
    for label, entry in per_method.items():
        by_lr: dict[str, list[float]] = {}
        within_all, diverged_all = [], []
        for task in task_names:
            for lr in tasks_info[task]["sweep_lrs"]:
                rec = finals(task, label, lr)
                if rec is None:
                    continue
                within = rec["final"] <= config.robustness_factor * oracle[task]
                index = tasks_info[task]["sweep_lrs"].index(lr)
                by_lr.setdefault(str(index), []).extend(within.astype(float).tolist())
                within_all.extend(within.tolist())
                diverged_all.extend(rec["diverged"].tolist())
        if within_all:
            entry["robustness"] = float(np.mean(within_all))
            entry["robustness_by_sweep_index"] = {k: float(np.mean(v)) for k, v in by_lr.items()}
            entry["sweep_divergence_rate"] = float(np.mean(diverged_all))

    targets = []
    policy = per_method.get("policy", {})
    values = {
        "win_rate_vs_constant_default": per_method.get("constant_default", {}).get(
            "win_rate_policy_vs"
        ),
        "win_rate_vs_cosine": per_method.get("cosine", {}).get("win_rate_policy_vs"),
        "median_ratio_to_oracle": policy.get("median_ratio"),
        "robustness": policy.get("robustness"),
    }
    for key, text, threshold, op in TARGETS:
        value = values[key]
        if value is None:
            status = "N/A"
        else:
            met = value >= threshold if op == ">=" else value <= threshold
            status = "MET" if met else "NOT MET"
        targets.append(
            {
                "name": key,
                "description": text,
                "value": value,
                "threshold": threshold,
                "status": status,
            }
        )

    return {
        "tasks": tasks_info,
        "task_names": task_names,
        "methods": per_method,
        "targets": targets,
        "sweep_lrs": list(config.sweep_lrs),
        "robustness_factor": config.robustness_factor,
    }


# ----------------------------------------------------------------------------- running it


def map_work_items(
    items: Sequence[WorkItem],
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """``[run_work_item(item) for item in items]`` here or as Ray tasks, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc="benchmark", unit="item", disable=not progress)
    try:
        if backend == "ray":
            from agents.ray_backend import ray_map  # imports ray lazily

            def advance(done: int, total: int) -> None:
                bar.update(done - bar.n)

            return ray_map(run_work_item, list(items), address=ray_address, progress=advance)
        outputs = []
        for item in items:
            bar.set_postfix_str(f"{item.label[:40]} ({len(item.arms)} arms)", refresh=False)
            outputs.append(run_work_item(item))
            bar.update(1)
        return outputs
    finally:
        bar.close()


def run_benchmark(
    config: BenchmarkConfig,
    policy: Any = "default",
    tasks: Sequence[Any] | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the held-out protocol and aggregate it.

    Args:
        config: The protocol's settings.
        policy: A bundle path or shipped name (``"default"``), or a policy object.
        tasks: Task objects to use instead of ``config.tasks`` (e.g. tiny test tasks).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"config", "policy", "seeds", "summary", "records", "items", "wall_s"}``;
        ``summary`` is `summarize`'s output plus each method's compute multiple.
    """
    import time

    started = time.perf_counter()
    import_plugins(config.plugins)
    _method_specs(config.methods)  # fail on a misspelt method before any work
    task_objs = tasks if tasks is not None else resolve_tasks(config.tasks)
    loaded = load_policy(policy)
    items = make_work_items(config, task_objs, policy)
    outputs = map_work_items(items, config.backend, config.ray_address, progress)
    records = [rec for out in outputs for rec in out["records"]]
    summary = summarize(records, config)
    specs = {s.name: s for s in _method_specs(config.methods)}
    for label, entry in summary["methods"].items():
        if label == "best_of_grid":
            entry.update(
                compute_multiple=float(config.grid_size),
                description="best constant lr of the grid (oracle)",
            )
        elif label == "policy":
            entry.update(compute_multiple=1.0, description="the tuning policy, deterministic")
        elif label in specs:
            entry.update(
                compute_multiple=specs[label].compute_multiple, description=specs[label].description
            )
    return {
        "config": dataclasses.asdict(config),
        "policy": {
            "ref": policy if isinstance(policy, str) else type(policy).__name__,
            "metadata": _nan_to_none(_jsonable(getattr(loaded, "metadata", {}))),
            "hparams": list(loaded.space.names),
        },
        "seeds": eval_seeds(config.n_seeds, config.seed_offset),
        "summary": summary,
        "records": records,
        "items": [
            {"task": out["task"], "n_records": len(out["records"]), "wall_s": out["wall_s"]}
            for out in outputs
        ],
        "wall_s": time.perf_counter() - started,
    }


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)
