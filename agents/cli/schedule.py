"""``hpo-rl schedule``: the deployed policy on a task's plain PyTorch twin, next to a
constant learning rate.

Both runs start from the task's default hyperparameters with the same seed
(same initialisation, same minibatches); one keeps them constant, the other
lets the tuning policy move them through a `TuningScheduler`. The command
writes a PNG (training / validation losses of both, the learning-rate
schedule on a log axis) and prints one line::

    policy_val=0.123 constant_val=0.145 ratio=0.85 plot=runs/schedule/schedule.png
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Any, Literal

from agents.common.files import atomic_savefig
from agents.common.validation import (
    add_config_arguments,
    apply_overrides,
    check_field_types,
    overrides_from_args,
)
from hpo_env.errors import ConfigError

DEFAULT_TASK = "digits_mlp:heldout"
"""A held-out supervised task: the policy never trained on it."""


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """What ``hpo-rl schedule`` runs."""

    policy: str = "default"
    """A shipped bundle name ("default") or a bundle directory."""
    task: str = DEFAULT_TASK
    """A supervised task name from ``tasks.distribution.list_tasks()`` (held-out by default)."""
    seed: int = 0
    """Run seed: initialisation, data split and minibatch order (shared by both runs)."""
    out: str = "runs/schedule"
    """Directory for the plot (and the wandb run, if any)."""
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """Weights & Biases mode; offline needs no account (``wandb sync`` later)."""
    val_every: int = 1
    """Measure validation loss every this many decisions (0: only at the end)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed=}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0 (0: only at the end), got {self.val_every=}")


COMMAND = "schedule"
SUMMARY = "run the tuning policy on a task's plain torch twin next to a constant learning rate"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help=SUMMARY,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_config_arguments(parser, ScheduleConfig, ScheduleConfig(), default_label="default")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agents.common.extras import require_extras

    # The tasks' data (scikit-learn's digits) and the comparison's figure.
    require_extras("hpo-rl schedule", {"sklearn": "train", "matplotlib": "plot"})
    config = apply_overrides(ScheduleConfig(), overrides_from_args(args, ScheduleConfig))
    result = run_schedule(config)
    print(result["summary"])
    return 0


# -- the comparison -------------------------------------------------------------------


def _supervised_task(name: str) -> Any:
    from tasks.distribution import list_tasks, task_by_name

    task = task_by_name(name)  # unknown names raise ValueError with the closest
    if not hasattr(task, "make_torch_run") or not hasattr(task, "default_hparams"):
        supervised = [n for n in list_tasks() if not n.startswith("control")]
        raise ConfigError(
            f"task {name!r} has no plain PyTorch twin (control tasks train inside the batched "
            f"engine only); choose a supervised task, one of {supervised}"
        )
    return task


def _train(
    task: Any, seed: int, policy: Any | None, wandb_run: Any | None, val_every: int
) -> dict[str, Any]:
    """One run of the task's torch twin from its default hyperparameters."""
    from agents.deploy.scheduler import write_hyperparameters

    run = task.make_torch_run(seed)
    write_hyperparameters(run.optimizer, task.default_hparams())
    k, n_decisions = task.updates_per_step, task.control_steps
    total = k * n_decisions
    sched = None
    if policy is not None:
        sched = policy.scheduler(
            run.optimizer, total_steps=total, control_interval=k, wandb_run=wandb_run
        )
    train_losses: list[float] = []
    lrs: list[float] = []
    val_steps: list[int] = [0]
    val_losses: list[float] = [run.val_loss()]
    for step in range(total):
        lrs.append(float(run.optimizer.param_groups[0]["lr"]))
        x, y = run.next_batch()
        loss = run.loss_fn(run.model(x), y)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        value = loss.item()
        train_losses.append(value)
        decision = (step + 1) // k
        val = None
        if (step + 1) % k == 0 and ((val_every and decision % val_every == 0) or step + 1 == total):
            val = run.val_loss()
            val_steps.append(step + 1)
            val_losses.append(val)
        if sched is not None:
            # The update count is the wandb step: rows line up with the run's own.
            sched.step(value, val_loss=val, step=step + 1)
    if sched is not None:
        sched.close()
    return {"train": train_losses, "lr": lrs, "val_steps": val_steps, "val": val_losses}


def _plot(path: str, task_name: str, tuned: dict[str, Any], constant: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    for label, result, color in (
        ("tuning policy", tuned, "C0"),
        ("constant (default)", constant, "C1"),
    ):
        train = np.asarray(result["train"], dtype=float)
        window = max(1, len(train) // 50)
        smooth = np.convolve(train, np.ones(window) / window, mode="valid")
        ax_loss.plot(
            np.arange(window, len(train) + 1),
            smooth,
            color=color,
            alpha=0.5,
            label=f"{label}: train",
        )
        ax_loss.plot(
            result["val_steps"],
            result["val"],
            "o-",
            color=color,
            ms=3,
            label=f"{label}: validation",
        )
        ax_lr.plot(np.arange(len(result["lr"])), result["lr"], color=color, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title(task_name, fontsize=9)
    ax_loss.legend(fontsize=8)
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("update")
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)


def run_schedule(config: ScheduleConfig) -> dict[str, Any]:
    """Run the comparison; returns final validation losses, curves, plot path and summary line."""
    from agents.common.tracking import Tracker
    from agents.policy.tuning_policy import TuningPolicy

    task = _supervised_task(config.task)
    policy = TuningPolicy.load(config.policy)
    from agents.common.threads import torch_threads

    with torch_threads(1):
        return _compare(config, task, policy, Tracker)


def _compare(config: ScheduleConfig, task: Any, policy: Any, tracker_cls: Any) -> dict[str, Any]:
    tracker = tracker_cls().start(
        {**dataclasses.asdict(config), "task_full_name": task.name},
        mode=config.wandb_mode,
        project="hpo-rl",
        dir=config.out,
        name=f"schedule-{config.task}-{config.seed}",
    )
    try:
        tuned = _train(task, config.seed, policy, tracker.run, config.val_every)
        constant = _train(task, config.seed, None, None, config.val_every)
        policy_val, constant_val = tuned["val"][-1], constant["val"][-1]
        ratio = policy_val / constant_val if constant_val > 0 else math.nan
        plot_path = os.path.join(config.out, "schedule.png")
        _plot(plot_path, task.name, tuned, constant)
        tracker.summary({"policy_val": policy_val, "constant_val": constant_val, "ratio": ratio})
        tracker.log_image("schedule/comparison", plot_path)
    finally:
        tracker.finish()
    summary = f"policy_val={policy_val:.4g} constant_val={constant_val:.4g} ratio={ratio:.3g} plot={plot_path}"
    return {
        "policy_val": policy_val,
        "constant_val": constant_val,
        "ratio": ratio,
        "plot": plot_path,
        "tuned": tuned,
        "constant": constant,
        "summary": summary,
        "task": task.name,
    }
