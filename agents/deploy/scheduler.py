"""`TuningScheduler`: a deployed tuning policy driving a plain PyTorch optimizer.

It follows the ``torch.optim.lr_scheduler`` conventions (``step``,
``get_last_lr``, ``state_dict`` / ``load_state_dict``) and reproduces the
environment's control loop on one run:

- the first decision is made at construction, before any update, from the
  hyperparameters alone (like `FeatureExtractor.reset` in the environment);
- then, after every ``control_interval`` calls of ``step(loss)``, a
  `StatsTracker` summarises the interval as `StepStats`, the policy's own
  `FeatureExtractor` turns them into an observation and the policy's action
  moves the hyperparameters by a bounded multiplicative step.

Several parameter groups keep their ratios: the controlled value is parameter
group 0's (that is what the policy observes, evolving exactly as in the
environment); every other group is moved by the same factor (log-scale
hyperparameters) or offset (linear ones) from its own starting value, clipped
to the bundle's bounds.

Example:
    >>> sched = policy.scheduler(optimizer, total_steps=3000)  # doctest: +SKIP
    >>> for x, y in loader:  # doctest: +SKIP
    ...     loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
    ...     sched.step(loss.item())
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.common.files import atomic_savefig
from agents.controllers.protocol import PolicyLike
from agents.deploy.run_stats import StatsTracker
from hpo_env.space import HyperparameterSpace, HyperparameterSpec

DEFAULT_DECISIONS_PER_RUN = 50
"""Decisions per run when the policy's metadata does not say how many it was trained with."""
BACKOFF_FACTOR = 10.0
"""A non-finite loss divides the learning rate by this (once per control interval)."""


def decisions_per_run(policy: Any) -> int:
    """Decisions per training run the policy was meta-trained with (its bundle's
    metadata), or `DEFAULT_DECISIONS_PER_RUN` when the bundle does not say."""
    value: Any = getattr(policy, "decisions_per_run", None)
    metadata = getattr(policy, "metadata", {}) or {}
    if value is None:
        value = metadata.get("decisions_per_run")
    if value is None:
        value = (metadata.get("control") or {}).get("decisions_per_run")
    try:
        value = int(value)
    except (TypeError, ValueError):
        return DEFAULT_DECISIONS_PER_RUN
    return value if value >= 1 else DEFAULT_DECISIONS_PER_RUN


# -- reading and writing canonical hyperparameters in optimizer param groups --------


def _read(group: Mapping[str, Any], name: str) -> float | None:
    """A group's value of canonical hyperparameter ``name``; None where it has none."""
    if name == "learning_rate":
        value = group.get("lr")
    elif name == "momentum":
        if "momentum" in group:
            value = group["momentum"]
        elif "betas" in group:  # Adam-style: beta1 is the momentum
            value = group["betas"][0]
        else:
            return None
    elif name == "weight_decay":
        value = group.get("weight_decay")
    else:  # entropy_coef and friends belong to RL trainers, not optimizers
        return None
    if value is None:
        return None
    return float(value)


def _write(group: dict[str, Any], name: str, value: float) -> None:
    if name == "learning_rate":
        key = "lr"
    elif name == "momentum" and "momentum" not in group:
        betas = group["betas"]
        if isinstance(betas[0], Tensor):
            betas[0].fill_(value)
        else:
            group["betas"] = (value, *tuple(betas)[1:])
        return
    else:
        key = name
    if isinstance(group[key], Tensor):  # tensor lr (capturable / fused optimizers)
        group[key].fill_(value)
    else:
        group[key] = value


def write_hyperparameters(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    """Set canonical hyperparameters (``learning_rate``, ``momentum``, ``weight_decay``)
    in every param group that has them; others are ignored.

    Raises:
        ValueError: a value is not finite.
    """
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        for group in optimizer.param_groups:
            if _read(group, name) is not None:
                _write(group, name, float(value))


def _clip(spec: HyperparameterSpec, value: float) -> float:
    """`HyperparameterSpec.clip` on a Python float (NaN goes to the lower bound)."""
    if math.isnan(value):
        return spec.low
    return min(max(value, spec.low), spec.high)


def _spec_ratio(spec: HyperparameterSpec, new: float, start: float) -> float:
    """Factor (log specs) or offset (linear specs) taking ``start`` to ``new``."""
    if spec.log:
        return new / _clip(spec, start)
    return new - start


def _spec_move(spec: HyperparameterSpec, base: float, change: float) -> float:
    if spec.log:
        if base == 0.0:  # a group with e.g. weight_decay=0 keeps it off
            return 0.0
        return _clip(spec, base * change)
    return _clip(spec, base + change)


class TuningScheduler:
    """Sets an optimizer's hyperparameters from a tuning policy, like an LR scheduler.

    Call ``step(loss)`` once after every ``optimizer.step()``.

    Args:
        policy: The tuning policy (`agents.policy.TuningPolicy` or anything `PolicyLike`).
        optimizer: Any ``torch.optim`` optimizer (SGD, Adam, AdamW, RMSprop, ...).
        total_steps: The run's update budget; ``progress = steps done / total_steps``.
        control_interval: Updates per decision; default ``max(1, total_steps //
            decisions_per_run)``, the number of decisions per run the bundle was
            meta-trained with (`decisions_per_run`; 50 when the bundle does not say).
        deterministic: Use the policy's mean action (True) or sample (the policy's
            sampling RNG is not part of `state_dict`).
        wandb_run: A wandb run to log the hyperparameters and the interval's losses
            to at every decision (keys ``schedule/*``, with ``schedule/step``; no
            explicit wandb step, so the user's own step counting is untouched),
            and the learning-rate plot on `close`.

    Attributes:
        history: One dict per decision: ``step``, ``hyperparameters`` (group 0's
            values now in effect), ``lrs`` (every group's), ``loss`` (the interval's
            mean training loss, NaN for the first decision) and ``val_loss``.
        last_obs: The latest observation the policy acted on, float32 [1, D].

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: Budget, interval or the optimizer's hyperparameters are invalid.
    """

    def __init__(
        self,
        policy: PolicyLike,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        control_interval: int | None = None,
        *,
        deterministic: bool = True,
        wandb_run: Any | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}; "
                "pass the optimizer whose hyperparameters the policy should control"
            )
        if (
            isinstance(total_steps, bool)
            or not isinstance(total_steps, (int, np.integer))
            or total_steps < 1
        ):
            raise ValueError(
                f"total_steps must be a positive int (the run's update budget), got {total_steps!r}"
            )
        self.policy = policy
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.control_interval = self._resolve_interval(control_interval)
        self.deterministic = deterministic
        self.wandb_run = wandb_run
        self.space: HyperparameterSpace = policy.space

        groups = optimizer.param_groups
        # Controlled and present: in the bundle's space and readable in every group.
        self.controlled: tuple[str, ...] = tuple(
            name for name in self.space.names if all(_read(g, name) is not None for g in groups)
        )
        self.base: dict[str, list[float]] = {
            name: [_read(g, name) for g in groups]  # type: ignore[misc]
            for name in self.controlled
        }
        for name, values in self.base.items():
            bad = [v for v in values if not math.isfinite(v) or v < 0]
            if bad or (name == "learning_rate" and any(v <= 0 for v in values)):
                raise ValueError(
                    f"optimizer {name} must be finite and {'> 0' if name == 'learning_rate' else '>= 0'} "
                    f"in every param group, got {values}"
                )
        if "learning_rate" not in self.controlled:
            warnings.warn(
                f"the policy's space {list(self.space.names)} does not control the learning rate; "
                "the scheduler will only change the other hyperparameters it holds",
                stacklevel=2,
            )
        # Group 0's values as float32 [1] tensors: the environment's arithmetic, bit for bit.
        self.values: dict[str, Tensor] = {
            name: torch.tensor([self.base[name][0]], dtype=torch.float32)
            for name in self.controlled
        }
        self.steps_done = 0
        self.history: list[dict[str, Any]] = []
        self.n_backoffs = 0
        self._interval_val: float | None = None
        self._backed_off_in_interval = False
        self._warned_nonfinite = False
        self._warned_overrun = False
        self._closed = False

        self.tracker = StatsTracker(optimizer)
        self.features = policy.feature_extractor(1)
        with torch.inference_mode():
            self.last_obs = self.features.reset(dict(self.values)).numpy()
            self._decide(self.last_obs)
        self._record(loss=float("nan"), val_loss=float("nan"))

    def _resolve_interval(self, control_interval: int | None) -> int:
        if control_interval is None:
            decisions = decisions_per_run(self.policy)
            return max(1, self.total_steps // decisions)
        if (
            isinstance(control_interval, bool)
            or not isinstance(control_interval, (int, np.integer))
            or control_interval < 1
        ):
            raise ValueError(
                f"control_interval must be a positive int (updates per decision), got {control_interval!r}"
            )
        if control_interval > self.total_steps:
            warnings.warn(
                f"control_interval={control_interval} exceeds total_steps={self.total_steps}: "
                "the policy decides only once, before training",
                stacklevel=3,
            )
        return int(control_interval)

    # -- the loop ---------------------------------------------------------------

    def step(self, loss: float | Tensor, val_loss: float | Tensor | None = None) -> None:
        """Record one update; every ``control_interval`` calls, let the policy decide.

        Args:
            loss: This update's minibatch loss (computed before ``optimizer.step()``).
            val_loss: A validation loss measured now, if any (any cadence; the latest
                one of an interval is the interval's).
        """
        loss = float(loss)
        if not math.isfinite(loss):
            self._back_off(loss)
        self.tracker.record(loss)
        if val_loss is not None:
            self._interval_val = float(val_loss)
        self.steps_done += 1
        if self.steps_done > self.total_steps and not self._warned_overrun:
            self._warned_overrun = True
            warnings.warn(
                f"TuningScheduler.step called more than total_steps={self.total_steps} times; "
                "the policy now sees progress=1 (pass the run's real budget as total_steps)",
                stacklevel=2,
            )
        if self.tracker.n_recorded >= self.control_interval:
            self._end_interval()

    @torch.inference_mode()  # no autograd bookkeeping: ~20% off a decision (measured)
    def _end_interval(self) -> None:
        progress = self.steps_done / self.total_steps
        stats = self.tracker.end_interval(self.values, progress, self._interval_val)
        obs = self.features.observe(stats)
        self.last_obs = obs.numpy()
        self._decide(self.last_obs)
        val = self._interval_val
        self._interval_val = None
        self._backed_off_in_interval = False
        self._record(loss=float(stats.train_loss[0]), val_loss=float("nan") if val is None else val)

    def _decide(self, obs: np.ndarray) -> None:
        action = np.asarray(
            self.policy.act(obs, deterministic=self.deterministic), dtype=np.float32
        )
        k = len(self.space)
        if action.size != k:
            raise ValueError(
                f"the policy returned an action of shape {action.shape}, expected {k} components "
                f"{list(self.space.names)} for one run"
            )
        new = self.space.apply(self.values, torch.as_tensor(action.reshape(1, k)))
        self.values.update(new)
        self._apply_to_optimizer()

    @torch.inference_mode()
    def _back_off(self, loss: float) -> None:
        if self._backed_off_in_interval or "learning_rate" not in self.values:
            return
        self._backed_off_in_interval = True
        self.n_backoffs += 1
        spec = self.space["learning_rate"]
        old = float(self.values["learning_rate"][0])
        self.values["learning_rate"] = spec.clip(self.values["learning_rate"] / BACKOFF_FACTOR)
        self._apply_to_optimizer()
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                f"non-finite training loss ({loss}) at step {self.steps_done + 1}: the learning rate "
                f"was cut {BACKOFF_FACTOR:g}x (from {old:.3g} to {float(self.values['learning_rate'][0]):.3g}, "
                f"at most once per {self.control_interval} steps); if the model's parameters are "
                "already non-finite, restore a checkpoint",
                stacklevel=3,
            )

    def _apply_to_optimizer(self) -> None:
        for name in self.controlled:
            spec = self.space[name]
            value0 = float(self.values[name][0])
            change = _spec_ratio(spec, value0, self.base[name][0])
            for i, group in enumerate(self.optimizer.param_groups):
                # Group 0 holds the environment's float32 value; the float64 clamp only
                # keeps its rounding (e.g. 0.99 -> 0.99000001) inside the bounds.
                value = (
                    _clip(spec, value0) if i == 0 else _spec_move(spec, self.base[name][i], change)
                )
                if not math.isfinite(value):  # unreachable by construction; never write NaN
                    continue
                _write(group, name, value)

    def _record(self, loss: float, val_loss: float) -> None:
        entry = {
            "step": self.steps_done,
            "hyperparameters": {name: float(v[0]) for name, v in self.values.items()},
            "lrs": self.get_last_lr(),
            "loss": loss,
            "val_loss": val_loss,
        }
        self.history.append(entry)
        if self.wandb_run is not None:
            from agents.common import tracking  # the one module that talks to wandb

            metrics: dict[str, float] = {
                f"schedule/{k}": float(v[0]) for k, v in self.values.items()
            }
            if math.isfinite(loss):
                metrics["schedule/train_loss"] = loss
            if math.isfinite(val_loss):
                metrics["schedule/val_loss"] = val_loss
            metrics["schedule/step"] = self.steps_done
            # No explicit wandb step: the user's own logging may count steps differently.
            tracking.log_to_run(self.wandb_run, metrics)

    # -- torch scheduler conventions ----------------------------------------------

    def get_last_lr(self) -> list[float]:
        """The learning rate of every param group, as last set."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue identically (save it with ``torch.save``)."""
        return {
            "total_steps": self.total_steps,
            "control_interval": self.control_interval,
            "steps_done": self.steps_done,
            "controlled": list(self.controlled),
            "base": {k: list(v) for k, v in self.base.items()},
            "values": {k: float(v[0]) for k, v in self.values.items()},
            "interval_val": self._interval_val,
            "backed_off_in_interval": self._backed_off_in_interval,
            "n_backoffs": self.n_backoffs,
            "warned_nonfinite": self._warned_nonfinite,
            "features": self.features.state_dict(),
            "tracker": self.tracker.state_dict(),
            "history": [dict(h) for h in self.history],
            "last_obs": self.last_obs.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` output and write the restored values into the optimizer."""
        controlled = tuple(state["controlled"])
        if controlled != self.controlled:
            raise ValueError(
                f"the saved scheduler controlled {list(controlled)}, this one controls "
                f"{list(self.controlled)}: resume with the same policy and optimizer type"
            )
        n_groups = len(self.optimizer.param_groups)
        saved_groups = {len(v) for v in state["base"].values()} or {n_groups}
        if saved_groups != {n_groups}:
            raise ValueError(
                f"the saved scheduler had {saved_groups.pop()} param groups, this optimizer has {n_groups}"
            )
        self.total_steps = int(state["total_steps"])
        self.control_interval = int(state["control_interval"])
        self.steps_done = int(state["steps_done"])
        self.base = {k: [float(x) for x in v] for k, v in state["base"].items()}
        self.values = {
            k: torch.tensor([float(v)], dtype=torch.float32) for k, v in state["values"].items()
        }
        self._interval_val = state["interval_val"]
        self._backed_off_in_interval = bool(state["backed_off_in_interval"])
        self.n_backoffs = int(state["n_backoffs"])
        self._warned_nonfinite = bool(state["warned_nonfinite"])
        self.features.load_state_dict(state["features"])
        self.tracker.load_state_dict(state["tracker"])
        self.history = [dict(h) for h in state["history"]]
        self.last_obs = np.asarray(state["last_obs"], dtype=np.float32)
        self._apply_to_optimizer()

    # -- reporting ------------------------------------------------------------------

    def plot(self, path: str | os.PathLike[str]) -> str:
        """Write a PNG of the schedule (learning rates, log axis) and the losses.

        Returns:
            The path written (atomically: a temporary file renamed into place).
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        steps = [h["step"] for h in self.history]
        fig, (ax_lr, ax_loss) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        lrs = np.array([h["lrs"] for h in self.history])
        for i in range(lrs.shape[1]):
            ax_lr.step(steps, lrs[:, i], where="post", label=f"group {i}")
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate")
        if lrs.shape[1] > 1:
            ax_lr.legend()
        ax_loss.plot(
            steps[1:], [h["loss"] for h in self.history[1:]], label="train (interval mean)"
        )
        val = [(h["step"], h["val_loss"]) for h in self.history if math.isfinite(h["val_loss"])]
        if val:
            ax_loss.plot(*zip(*val), "o-", label="validation")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("loss")
        ax_loss.legend()
        fig.tight_layout()
        path = os.fspath(path)
        try:
            atomic_savefig(fig, path, dpi=100)
        finally:
            plt.close(fig)
        return path

    def close(self) -> None:
        """Log the schedule's plot to ``wandb_run`` (once); safe to call repeatedly."""
        if self._closed:
            return
        self._closed = True
        if self.wandb_run is not None:
            from agents.common import tracking

            steps = [h["step"] for h in self.history]
            lrs = [h["hyperparameters"].get("learning_rate", float("nan")) for h in self.history]
            tracking.line_plot(
                self.wandb_run,
                "schedule/learning_rate_plot",
                steps,
                lrs,
                title="learning rate set by the tuning policy",
                xname="step",
            )

    def __repr__(self) -> str:
        values = {k: f"{float(v[0]):.3g}" for k, v in self.values.items()}
        return (
            f"TuningScheduler(steps={self.steps_done}/{self.total_steps}, "
            f"control_interval={self.control_interval}, values={values})"
        )
