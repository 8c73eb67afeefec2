"""``hpo-rl schedule``: the shipped policy on one plain-PyTorch run it never trained on,
next to a constant rate and cosine with warm-up, all from the user's rate.

The task comes from the transfer suite's *validation* split
(`agents.benchmark.transfer.suite`): real data, a model and an optimizer as a
user would write them, and the learning rate such a user would start from. The
three runs share the seed (initialisation, data split, batch order) and the
start rate, and go through the transfer benchmark's one loop
(`agents.benchmark.transfer.loop.train_run`). The command prints what the task
is, each method's final validation loss (lower is better), a verdict that says
plainly whether the policy won or lost on this run, and writes a PNG (validation
losses and learning rates of the three runs)::

    task: classification_mlp_adam ... Adam from the user's rate 0.0003 ...
    each run: seed 0, the same initial weights and batches, from the user's rate
    final validation loss (cross-entropy), lower is better:
      tuning policy        0.06547
      constant rate        0.06542
      cosine with warm-up  0.06387   best
    plot: runs/schedule/schedule.png
    measured on CPU: ...
    verdict: the policy lost to the constant rate by 0.087% and to cosine with warm-up by 2.5% on this run ...
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

DEFAULT_TASK = "classification_mlp_adam"
"""The validation split's plain MLP started from a typical rate (Adam at 3e-4): the run
a newcomer most likely has. Chosen for that, not for how the policy does on it."""

TIE_TOLERANCE = 1e-9
"""Relative difference below which two final losses tie (the benchmarks' convention)."""

METHOD_LABELS = {
    "policy": "tuning policy",
    "constant": "constant rate",
    "cosine_warmup": "cosine with warm-up",
}
"""Printed names of the three runs, in the order printed."""

DATA_TEXT = {
    "wine": "scikit-learn's wine table",
    "breast_cancer": "scikit-learn's breast-cancer table",
    "iris": "scikit-learn's iris table",
    "diabetes": "scikit-learn's diabetes table",
    "digits": "scikit-learn's 8x8 digits as 64 pixels",
    "digits_rows": "scikit-learn's 8x8 digits read row by row",
    "moons": "scikit-learn's two-moons generator (noise 0.3)",
    "classification": "scikit-learn's 4-class classification generator (20 features)",
    "friedman": "scikit-learn's Friedman #1 regression generator",
    "chars": "scikit-learn's data-set descriptions as characters",
    "docs": "Python standard-library docstrings as characters",
}
MODEL_TEXT = {
    "mlp": "an MLP (GELU)",
    "resmlp": "a residual MLP (LayerNorm)",
    "gru": "a GRU",
    "lstm": "an LSTM",
    "cnn1d": "a causal 1-D CNN",
    "transformer": "a one-block causal transformer",
}
OPTIMIZER_TEXT = {
    "sgd_momentum": "SGD with momentum 0.9",
    "adam": "Adam",
    "adamw": "AdamW (weight decay 0.01)",
    "rmsprop": "RMSprop",
}
LOSS_TEXT = {
    "classification": "cross-entropy",
    "regression": "mean squared error of the standardised target",
    "language": "next-character cross-entropy",
}


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """What ``hpo-rl schedule`` runs."""

    policy: str = "default"
    """A shipped bundle name ("default") or a bundle directory."""
    task: str = DEFAULT_TASK
    """A task of the transfer suite's validation split (plain PyTorch, never trained on)."""
    seed: int = 0
    """Run seed: initialisation, data split and batch order (shared by the three runs)."""
    out: str = "runs/schedule"
    """Directory for the plot (and the wandb run, if any)."""
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """Weights & Biases mode; offline needs no account (``wandb sync`` later)."""
    val_every: int | None = None
    """Measure validation loss every this many updates (None: the task's own cadence;
    0: only at the end). The policy sees it at this cadence, as a user would report it."""
    start_multiplier: float = 1.0
    """Start all three runs at this multiple of the user's rate (100: far too hot, 0.01:
    far too low, as the transfer suite's robustness sweep does)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed=}")
        if not (math.isfinite(self.start_multiplier) and self.start_multiplier > 0):
            raise ConfigError(
                f"start_multiplier must be a finite number > 0 (1: the user's rate), "
                f"got {self.start_multiplier=}"
            )
        if self.val_every is not None and self.val_every < 0:
            raise ConfigError(
                f"val_every must be >= 0 (0: only at the end; unset: the task's cadence), "
                f"got {self.val_every=}"
            )


COMMAND = "schedule"
SUMMARY = (
    "the shipped policy vs a constant rate vs cosine with warm-up on one plain-PyTorch run "
    "it never trained on"
)


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

    # The tasks' data (scikit-learn tables) and the comparison's figure.
    require_extras("hpo-rl schedule", {"sklearn": "train", "matplotlib": "plot"})
    config = apply_overrides(ScheduleConfig(), overrides_from_args(args, ScheduleConfig))
    result = run_schedule(config)
    print(result["summary"])
    return 0


# -- the task -------------------------------------------------------------------------


def validation_task(name: str, val_every: int | None = None) -> Any:
    """The transfer validation task ``name`` (a `TaskSpec`), at the validation cadence asked."""
    from agents.benchmark.transfer.suite import TEST_TASKS, VALIDATION_TASKS, tasks_for

    names = [t.name for t in VALIDATION_TASKS]
    if name in {t.name for t in TEST_TASKS}:
        raise ConfigError(
            f"task {name!r} is in the transfer suite's test split (reported once by "
            f"`hpo-rl transfer --split test`, never looked at to choose anything); "
            f"`hpo-rl schedule --task` takes a validation-split task, one of {names}"
        )
    try:
        (task,) = tasks_for("validation", [name])
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; `hpo-rl schedule --task` takes a task of the transfer suite's validation "
            f"split, one of {names}"
        ) from None
    if val_every is not None:
        every = task.n_updates if val_every == 0 else min(val_every, task.n_updates)
        task = dataclasses.replace(task, val_every=every)
    return task


def describe_task(task: Any, data: Any) -> str:
    """What the run is, in words: data, model, optimizer, the user's rate, updates."""
    return (
        f"task: {task.name}, a plain PyTorch run the policy never trained on (transfer "
        f"suite, validation split): {DATA_TEXT.get(task.data, task.data)} ({data.kind}, "
        f"{len(data.x_train):,} training / {len(data.x_val):,} validation examples), "
        f"{MODEL_TEXT.get(task.model, task.model)} of width {task.width}, "
        f"{OPTIMIZER_TEXT.get(task.optimizer, task.optimizer)} from the user's rate "
        f"{task.start_lr:g} ({task.start_regime} for it), {task.n_updates:,} updates of "
        f"batch {task.batch_size}, validation every {task.val_every} updates"
    )


def _multiple_text(multiplier: float, start_lr: float) -> str:
    """`` x 100 (5)``: the start asked for, when it is not the user's rate itself."""
    return "" if multiplier == 1.0 else f" x {multiplier:g} ({start_lr * multiplier:g})"


# -- the verdict ----------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value:.2g}%" if value < 100 else f"{value:,.0f}%"


def verdict(objectives: dict[str, float], diverged: dict[str, bool] | None = None) -> str:
    """One plain sentence: did the policy beat, tie or lose to each baseline on this run.

    ``objectives`` maps ``"policy"``, ``"constant"`` and ``"cosine_warmup"`` to final
    validation losses (lower is better). A percentage is the loser's excess over the
    winner: "lost to cosine with warm-up by 12%" means the policy's loss is 1.12x.

    Example:
        >>> verdict({"policy": 1.12, "constant": 1.0, "cosine_warmup": 1.5})
        'the policy lost to the constant rate by 12% but beat cosine with warm-up by 34% on this run'
    """
    diverged = diverged or {}
    policy = objectives["policy"]
    beat, lost, tied = [], [], []
    for name in ("constant", "cosine_warmup"):
        other = objectives[name]
        label = METHOD_LABELS[name] if name != "constant" else "the constant rate"
        if abs(policy - other) <= TIE_TOLERANCE * max(abs(policy), abs(other)):
            tied.append(label)
        elif policy < other:
            note = " (which diverged)" if diverged.get(name) else ""
            beat.append(f"{label}{note} by {_percent(100 * (other - policy) / policy)}")
        else:
            lost.append(f"{label} by {_percent(100 * (policy - other) / other)}")
    parts = []
    if lost:
        parts.append("lost to " + " and to ".join(lost))
    if beat:
        parts.append("beat " + " and ".join(beat))
    if tied:
        parts.append("tied with " + " and ".join(tied))
    joined = parts[0] if len(parts) == 1 else f"{parts[0]} but {' and '.join(parts[1:])}"
    prefix = "the policy (which diverged) " if diverged.get("policy") else "the policy "
    return prefix + joined + " on this run"


# -- the runs -------------------------------------------------------------------------


class _TrackedPolicy:
    """The transfer benchmark's policy method (`PolicyMethod`), also logging its decisions
    to the wandb run; the scheduler is kept so that it can be closed after the run."""

    name = "policy"

    def __init__(self, policy: Any, wandb_run: Any | None) -> None:
        self.policy = policy
        self.wandb_run = wandb_run
        self.scheduler: Any = None

    def build(self, params: Any, task: Any, start_lr: float) -> Any:
        from agents.benchmark.transfer.methods import RunControl, make_optimizer

        optimizer = make_optimizer(task.optimizer, params, start_lr)
        self.scheduler = self.policy.scheduler(
            optimizer, total_steps=task.n_updates, wandb_run=self.wandb_run
        )
        scheduler = self.scheduler

        class _Control(RunControl):
            n_updates = 0

            def after_update(self, loss: float, val_loss: float | None) -> None:
                self.n_updates += 1  # the update count is the wandb step
                scheduler.step(loss, val_loss=val_loss, step=self.n_updates)

        return _Control(optimizer)


def _plot(path: str, title: str, runs: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    for (name, result), color in zip(runs.items(), ("C0", "C1", "C2")):
        label = METHOD_LABELS[name]
        steps = [s for s, v in zip(result.val_steps, result.val_losses) if v is not None]
        values = [v for v in result.val_losses if v is not None]
        width = 2.5 if name == "policy" else 1.5
        ax_loss.plot(steps, values, "o-", color=color, ms=3, lw=width, label=label)
        ax_lr.plot(result.lr_steps, result.lrs, color=color, lw=width, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("validation loss (lower is better)")
    ax_loss.set_title(title, fontsize=9)
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
    """Run the comparison; returns the three runs, the verdict, the plot path and the text printed."""
    from agents.common.threads import torch_threads
    from agents.common.tracking import Tracker
    from agents.policy.tuning_policy import TuningPolicy

    task = validation_task(config.task, config.val_every)
    policy = TuningPolicy.load(config.policy)
    with torch_threads(1):
        return _compare(config, task, policy, Tracker)


def _compare(config: ScheduleConfig, task: Any, policy: Any, tracker_cls: Any) -> dict[str, Any]:
    from agents.benchmark.transfer.data import load_dataset
    from agents.benchmark.transfer.loop import train_run
    from agents.benchmark.transfer.methods import Constant, CosineWarmup
    from agents.common.platform import describe_platform

    data = load_dataset(task.data, config.seed, seq_len=task.seq_len)
    tracker = tracker_cls().start(
        {**dataclasses.asdict(config), "task_spec": dataclasses.asdict(task)},
        mode=config.wandb_mode,
        project="hpo-rl",
        dir=config.out,
        name=f"schedule-{config.task}-{config.seed}",
    )
    try:
        tracked = _TrackedPolicy(policy, tracker.run)
        runs: dict[str, Any] = {}
        for name, method in (
            ("policy", tracked),
            ("constant", Constant()),
            ("cosine_warmup", CosineWarmup()),
        ):
            # Same seed and rate: the same start for all three.
            runs[name] = train_run(task, method, config.seed, config.start_multiplier)
            if name == "policy" and tracked.scheduler is not None:
                tracked.scheduler.close()
        objectives = {name: run.objective for name, run in runs.items()}
        diverged = {name: run.diverged for name, run in runs.items()}
        sentence = verdict(objectives, diverged)
        plot_path = os.path.join(config.out, "schedule.png")
        start = task.start_lr * config.start_multiplier
        _plot(plot_path, f"{task.name}: {OPTIMIZER_TEXT[task.optimizer]} from {start:g}", runs)
        ratio = (
            objectives["policy"] / objectives["constant"]
            if objectives["constant"] > 0
            else math.nan
        )
        tracker.summary(
            {
                "policy_val": objectives["policy"],
                "constant_val": objectives["constant"],
                "cosine_warmup_val": objectives["cosine_warmup"],
                "ratio": ratio,
            }
        )
        tracker.log_image("schedule/comparison", plot_path)
    finally:
        tracker.finish()

    best = min(objectives, key=objectives.__getitem__)
    rows = []
    for name, run in runs.items():
        notes = [note for note, on in (("best", name == best), ("diverged", run.diverged)) if on]
        rows.append(
            f"  {METHOD_LABELS[name]:<20} {run.objective:.4g}"
            + (f"   {', '.join(notes)}" if notes else "")
        )
    lines = [
        describe_task(task, data),
        f"each run: seed {config.seed}, the same initial weights and batches, from the user's rate"
        + _multiple_text(config.start_multiplier, task.start_lr),
        f"final validation loss ({LOSS_TEXT.get(data.kind, 'loss')}), lower is better:",
        *rows,
        f"plot: {plot_path}",
        f"measured on {describe_platform()} (other CPUs can give other digits)",
        f"verdict: {sentence} (one seed on one task; `hpo-rl transfer` measures the spread)",
    ]
    return {
        "task": task.name,
        "runs": runs,
        "objectives": objectives,
        "policy_val": objectives["policy"],
        "constant_val": objectives["constant"],
        "cosine_val": objectives["cosine_warmup"],
        "ratio": ratio,
        "verdict": sentence,
        "plot": plot_path,
        "summary": "\n".join(lines),
    }
