"""Drive hyperparameter controllers on batched runs, and the benchmark protocol.

`rollout` is the one loop every method goes through: the learned policy
(`PolicyController`), every baseline of `agents.baselines`, and the periodic
held-out evaluation of the trainer. It follows `hpo_env.core.EpisodeEngine`
step for step (the same ``evaluate`` calls, the same ``StepStats`` with the
same progress and validation cadence), so a policy sees here exactly the
observations it saw during meta-training.

Example:
    >>> from tests.hpo_env.tiny_task import TinyRegressionTask  # doctest: +SKIP
    >>> result = rollout(ConstantController(), TinyRegressionTask(), seeds=[1, 2])  # doctest: +SKIP
    >>> result.final_objective.shape  # doctest: +SKIP
    (2,)
"""

from __future__ import annotations

import dataclasses
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
    if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 0:
        raise ValueError(f"val_every must be an int >= 0 (0 = never), got {val_every!r}")
    if initial_lr is not None and not (np.isfinite(initial_lr) and initial_lr > 0):
        raise ValueError(f"initial_lr must be a finite number > 0, got {initial_lr!r}")
    config = reward_config or RewardConfig()
    n, n_steps, k = len(seeds), int(task.control_steps), int(task.updates_per_step)
    run = task.build(seeds)

    start: dict[str, float] = {}
    if initial_hparams:
        start.update({k_: float(v) for k_, v in initial_hparams.items() if k_ in run.hparam_names})
    if initial_lr is not None:
        start["learning_rate"] = float(initial_lr)
    if start:
        run.set_hyperparameters({k_: torch.full((n,), v) for k_, v in start.items()})

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
        initial_lr=initial_lr,
    )
