"""`rollout`: drive one controller (or several, stacked) over a batched run, through the one control interval of `hpo_env.interval`."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.common.files import json_safe
from agents.controllers.protocol import Controller, RolloutContext
from hpo_env.interval import run_interval, validation_seen
from hpo_env.protocol import Task
from hpo_env.reward import RewardConfig, objective_of
from hpo_env.stats import StepStats


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
        return json_safe(out)


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
        outcome = run_interval(
            run,
            k,
            first_val=first_val,
            progress=torch.full((n,), step / n_steps, dtype=torch.float32),
            seen=validation_seen(step, val_every, n),
            decision=controller.decide(stats),
            reward_config=config,
        )
        stats, val = outcome.stats, outcome.val
        new_div = outcome.diverged & ~diverged
        diverged_at[new_div.numpy()] = step - 1
        diverged |= new_div
        val_curve[:, step - 1] = val.double().numpy()
        train_curve[:, step - 1] = stats.train_loss.double().numpy()
        for name, value in stats.hparams.items():
            if name in trajectory:
                trajectory[name][:, step - 1] = value.double().numpy()

    final_val = val.double().numpy().copy()
    final_objective, div = objective_of(
        final_val, first_val.double().numpy(), diverged.numpy(), config
    )
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
        diverged=div,
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
