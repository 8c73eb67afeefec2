"""`TuningScheduler`: a deployed tuning policy driving a plain PyTorch optimizer.

Why one module of ~600 lines: it is one class whose state (decision clock, pending
losses, features, guard, history, W&B rows) is saved and restored as one
``state_dict``; its helpers already live beside it (`guard`, `losses`,
`optimizer_hparams`, `schedule_plot`).

It is a ``torch.optim.lr_scheduler.LRScheduler`` (``isinstance`` holds;
``last_epoch``, ``base_lrs``, ``get_last_lr``, ``state_dict`` /
``load_state_dict`` behave as torch documents them) whose ``step`` takes the
update's loss, like ``ReduceLROnPlateau.step(metrics)``. It reproduces the
environment's control loop on one run:

- the first decision is made at construction, before any update, from the
  hyperparameters alone (like `FeatureExtractor.reset` in the environment);
- then, after every ``control_interval`` calls of ``step(loss)``, a
  `StatsTracker` summarises the interval as `StepStats`, the policy's own
  `FeatureExtractor` turns them into an observation and the policy's action
  moves the hyperparameters by a bounded multiplicative step;
- where the bundle's space carries an annealing prior (`hpo_env.space.PRIORS`),
  the optimizer receives the policy's value times the prior read at the coming
  interval's midpoint, while the policy keeps observing its own value (as in
  the environment). `in_effect` gives the values the optimizer uses.

Several parameter groups keep their ratios: the controlled value is parameter
group 0's (that is what the policy observes, evolving exactly as in the
environment); every other group is moved by the same factor (log-scale
hyperparameters) or offset (linear ones) from its own starting value, clipped
to the bundle's bounds.

Do no harm (``nonfinite=``): by default (``"rollback"``) parameters that are no
longer finite (checked after a non-finite loss, and at every decision) go back
to the last decision's snapshot (the one `StatsTracker` keeps anyway), clear
the optimizer's per-parameter state and cut the learning rate, at no cost per
update and with no device synchronisation between decisions. ``"skip"`` checks
every update's gradients instead (`NonFiniteGuard`: nothing but the bad update
is lost, at ~3% of a small CPU model's step and one sync per update);
``"off"`` only cuts the learning rate.

The module passes 500 lines on purpose: `TuningScheduler` mirrors the
environment's control loop step for step and reads best whole; its pieces
live beside it (`optimizer_hparams`, `losses`, `guard`, `schedule_plot`).

Example:
    >>> sched = policy.scheduler(optimizer, total_steps=3000)  # doctest: +SKIP
    >>> for x, y in loader:  # doctest: +SKIP
    ...     loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
    ...     sched.step(loss)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from agents.controllers.protocol import PolicyLike
from agents.deploy.guard import NonFiniteGuard
from agents.deploy.losses import PendingLosses, check_loss
from agents.deploy.optimizer_hparams import (
    clip_to_spec,
    read_hparam,
    spec_change,
    spec_move,
    write_hparam,
    write_hyperparameters,
)
from agents.deploy.run_stats import StatsTracker
from hpo_env.space import HyperparameterSpace, interval_midpoint

__all__ = [
    "BACKOFF_FACTOR",
    "DEFAULT_DECISIONS_PER_RUN",
    "NONFINITE_MODES",
    "PolicyLike",
    "TuningScheduler",
    "decisions_per_run",
    "write_hyperparameters",
]

_INF, _NEG_INF = math.inf, -math.inf
DEFAULT_DECISIONS_PER_RUN = 50
"""Decisions per run when the policy's metadata does not say how many it was trained with."""
BACKOFF_FACTOR = 10.0
"""A non-finite loss or gradient divides the learning rate by this (once per control interval)."""
NONFINITE_MODES = ("rollback", "skip", "off")
"""What `TuningScheduler` does about non-finite losses, gradients and parameters."""


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


def _check_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TypeError(f"step must be a non-negative int (your own step counter), got {step!r}")
    return int(step)


def _resolve_nonfinite(nonfinite: Any, skip_nonfinite: bool | None) -> str:
    if skip_nonfinite is not None:
        if nonfinite != "rollback":
            raise ValueError(
                "pass nonfinite= alone: skip_nonfinite is its deprecated spelling "
                f"(got nonfinite={nonfinite!r} and skip_nonfinite={skip_nonfinite!r})"
            )
        nonfinite = "skip" if skip_nonfinite else "off"
        warnings.warn(
            f"skip_nonfinite is deprecated: pass nonfinite={nonfinite!r}",
            DeprecationWarning,
            stacklevel=4,
        )
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(
            f"nonfinite must be one of {list(NONFINITE_MODES)}, got {nonfinite!r} "
            '("rollback" returns to the last decision\'s parameters, "skip" checks every '
            'update\'s gradients, "off" only cuts the learning rate)'
        )
    return str(nonfinite)


class TuningScheduler(LRScheduler):
    """Sets an optimizer's hyperparameters from a tuning policy; a torch ``LRScheduler``.

    Call ``step(loss)`` once after every ``optimizer.step()``; call `close` when
    training ends (it logs the schedule's plot to ``wandb_run`` if the last
    decision has not, and detaches the non-finite guard from the optimizer).
    In Lightning, return it as ``{"scheduler": sched, "interval": "step"}`` and
    override ``LightningModule.lr_scheduler_step`` to call ``scheduler.step(loss)``.

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
            to at every decision (keys ``schedule/*``, with ``schedule/step``), and
            the learning-rate plot at the last decision (or on `close`). Logged at
            your step when you give one (``step(loss, step=...)`` or ``step_fn``);
            without one, with ``commit=False``: the values join your next
            ``run.log`` row and the scheduler never creates a wandb step itself.
        step_fn: Returns your current wandb step (e.g. ``lambda: global_step``);
            used when ``step()`` gets no ``step=``.
        nonfinite: What a NaN/inf does to the run (the learning rate is cut
            `BACKOFF_FACTOR`x in every mode, at most once per interval):

            - ``"rollback"`` (default): parameters that are not finite after a
              non-finite loss (a float at once, a tensor when read at the decision),
              or whose norm is not finite at a decision, go back to the last decision's
              (float32 copies: a float64 parameter comes back rounded) and clear the
              optimizer's per-parameter state (momenta, Adam's moments restart).
              Costs nothing per update and never synchronises a device between
              decisions; up to one interval's progress is lost per event.
            - ``"skip"``: a `NonFiniteGuard` checks every update's gradients and
              skips an update with a NaN/inf element (weights and optimizer state
              untouched). Only the bad update is lost, at one fused read of the
              gradients and one host sync per update (~3% of a small CPU MLP's
              step, `hpo-rl bench overhead`).
            - ``"off"``: nothing beyond the learning-rate cut.
        skip_nonfinite: Deprecated: True is ``nonfinite="skip"``, False ``"off"``.

    Attributes:
        history: One dict per decision: ``step``, ``hyperparameters`` (group 0's
            values now in effect), ``lrs`` (every group's), ``loss`` (the interval's
            mean training loss, NaN for the first decision) and ``val_loss``.
        last_obs: The latest observation the policy acted on, float32 [1, D].
        base_lrs: Every group's learning rate before the policy's first decision.
        last_epoch: Updates recorded so far (``step`` calls), as torch counts them.
        n_backoffs: Learning-rate back-offs (non-finite losses or gradients).
        n_rollbacks: Returns to the last decision's parameters (``"rollback"``).
        n_skipped: Optimizer updates skipped for non-finite gradients (``"skip"``).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: Budget, interval, ``nonfinite`` or the optimizer's
            hyperparameters are invalid.
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
        step_fn: Callable[[], int] | None = None,
        nonfinite: str = "rollback",
        skip_nonfinite: bool | None = None,
    ) -> None:
        # LRScheduler.__init__ is not called on purpose: it takes a scheduling step
        # at once, with no loss; here the first decision is the policy's, before any
        # update. The attributes torch's schedulers expose are set below instead.
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
        if step_fn is not None and not callable(step_fn):
            raise TypeError(f"step_fn must be a callable returning an int, got {step_fn!r}")
        self.nonfinite = _resolve_nonfinite(nonfinite, skip_nonfinite)
        self.policy = policy
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.control_interval = self._resolve_interval(control_interval)
        self.deterministic = deterministic
        self.wandb_run = wandb_run
        self.step_fn = step_fn
        self.space: HyperparameterSpace = policy.space

        groups = optimizer.param_groups
        # Controlled and present: in the bundle's space and readable in every group.
        self.controlled: tuple[str, ...] = tuple(
            name
            for name in self.space.names
            if all(read_hparam(g, name) is not None for g in groups)
        )
        self.base: dict[str, list[float]] = {
            name: [read_hparam(g, name) for g in groups]  # type: ignore[misc]
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
        # torch's LRScheduler state: the user's own start rates, before any decision.
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float | Tensor] = [float(g["initial_lr"]) for g in groups]
        # Group 0's values as float32 scalars, moved by the space's one-run twins
        # (`HyperparameterSpace.apply_one`): the environment's arithmetic, bit for bit.
        self.values: dict[str, np.float32] = {
            name: np.float32(self.base[name][0]) for name in self.controlled
        }
        # Updates are counted by their losses: `steps_done` is the updates whose
        # losses the tracker holds or has summarised, plus the pending ones.
        self._pending = PendingLosses()
        self._steps_flushed = 0
        self._due = 1  # `step` takes its slow path once this many losses are pending
        self.prior_progress = 0.0
        self._in_effect: dict[str, float] = {}  # what _apply_to_optimizer last wrote
        self.history: list[dict[str, Any]] = []
        self.n_backoffs = 0
        self.n_rollbacks = 0
        self._interval_val: float | Tensor | None = None
        self._backed_off_in_interval = False
        self._warned_nonfinite = False
        self._warned_overrun = False
        self._warned_step_order = False
        self._last_logged_step: int | None = None
        self._plot_logged = False

        self.tracker = StatsTracker(optimizer)
        self.features = policy.feature_extractor(1)
        with torch.inference_mode():
            self.last_obs = self.features.reset(self.values).numpy()
            self._decide(self.last_obs)
        self._record(loss=float("nan"), val_loss=float("nan"), user_step=self._user_step(None))
        self._update_due()
        self.guard = (
            NonFiniteGuard(optimizer, self._on_skipped_update) if self.nonfinite == "skip" else None
        )

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

    # -- torch's counters -------------------------------------------------------

    @property
    def last_epoch(self) -> int:
        """Updates recorded so far (torch's name for a scheduler's step count)."""
        return self.steps_done

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        self.steps_done = int(value)

    @property
    def steps_done(self) -> int:
        """Updates recorded so far (``step`` calls)."""
        return self._steps_flushed + len(self._pending.items)

    @steps_done.setter
    def steps_done(self, value: int) -> None:
        self._steps_flushed = int(value) - len(self._pending.items)
        self._update_due()

    @property
    def _step_count(self) -> int:
        """torch's count of scheduler steps, the constructor's included."""
        return self.steps_done + 1

    def _update_due(self) -> None:
        """How many pending losses end the interval or overrun the budget: `step`'s
        only per-update test."""
        due = self.control_interval - self.tracker.n_recorded
        if not self._warned_overrun:
            due = min(due, self.total_steps + 1 - self._steps_flushed)
        self._due = due

    @property
    def n_skipped(self) -> int:
        """Optimizer updates the non-finite guard skipped."""
        return 0 if self.guard is None else self.guard.n_skipped

    # -- the loop ---------------------------------------------------------------

    def step(
        self,
        loss: float | Tensor | None = None,
        val_loss: float | Tensor | None = None,
        *,
        step: int | None = None,
    ) -> None:
        """Record one update; every ``control_interval`` calls, let the policy decide.

        Args:
            loss: This update's minibatch loss (computed before ``optimizer.step()``):
                a float or a one-element tensor, also one that requires grad or lives
                on an accelerator (read once per decision, not once per update).
            val_loss: A validation loss measured now, if any (any cadence; the latest
                one of an interval is the interval's).
            step: Your own step counter, for wandb (default: ``step_fn()`` if given).

        Raises:
            TypeError: No loss, or a loss / step of the wrong type (e.g. a string).
            ValueError: A tensor loss with more than one element.
        """
        if type(loss) is float and val_loss is None and step is None and _NEG_INF < loss < _INF:
            # ``step(loss.item())``, the common call: nothing to check or convert, one
            # list append and one comparison. It runs after every update, where the
            # training step has just evicted everything from the caches: each attribute
            # touched here costs ~0.1% of a small model's step (`hpo-rl bench overhead`).
            pending = self._pending.items
            pending.append(loss)  # a float: no tensor position to note
            if len(pending) >= self._due:
                self._interval_full_or_overrun(None)
            return
        if (
            type(loss) is Tensor
            and val_loss is None
            and step is None
            and loss.dim() == 0
            and not loss.is_complex()
        ):
            # ``step(loss)`` with the loss tensor, as the README's loop does: detached
            # (nothing keeps its graph alive) and kept unread until the decision. The
            # general path's conversions cost ~5 us per update more.
            self._pending.append_tensor(loss.detach())
            if len(self._pending.items) >= self._due:
                self._interval_full_or_overrun(None)
            return
        self._take(loss, val_loss, step)
        if len(self._pending.items) >= self._due:
            self._interval_full_or_overrun(_check_step(step))

    def _take(self, loss: Any, val_loss: Any, step: Any) -> None:
        """`step`'s inputs other than one finite float: checked, converted, recorded."""
        if loss is None:
            raise TypeError(
                "TuningScheduler.step needs this update's training loss: call sched.step(loss) "
                "after optimizer.step() (Lightning: override LightningModule.lr_scheduler_step "
                "to call scheduler.step(loss))"
            )
        checked = check_loss(loss, "loss")
        checked_val = None if val_loss is None else check_loss(val_loss, "val_loss")
        _check_step(step)
        if isinstance(checked, float) and not math.isfinite(checked):
            self._on_nonfinite_loss(checked)
        self._pending.append(checked)
        if checked_val is not None:
            self._interval_val = checked_val

    def _interval_full_or_overrun(self, user_step: int | None) -> None:
        if self.steps_done > self.total_steps and not self._warned_overrun:
            self._warned_overrun = True
            self._update_due()
            warnings.warn(
                f"TuningScheduler.step called more than total_steps={self.total_steps} times; "
                "the policy now sees progress=1 (pass the run's real budget as total_steps)",
                stacklevel=3,
            )
        if self.tracker.n_recorded + len(self._pending) >= self.control_interval:
            self._end_interval(self._user_step(user_step))

    def _flush_pending(self) -> None:
        """Read the interval's losses (one transfer per device) into the tracker."""
        # Float losses were judged on arrival; only tensors are news here.
        from_tensors = list(self._pending.tensor_positions)
        self._steps_flushed += len(self._pending)
        val_pending = isinstance(self._interval_val, Tensor)
        if val_pending:
            self._pending.append(self._interval_val)  # type: ignore[arg-type]
        values = self._pending.read()
        if val_pending:
            self._interval_val = values.pop()
        bad = next((values[i] for i in from_tensors if not math.isfinite(values[i])), None)
        if bad is not None:
            self._on_nonfinite_loss(bad)
        self.tracker.record_many(values)
        self._update_due()

    def _on_nonfinite_loss(self, loss: float) -> None:
        """A NaN/inf loss: its gradient has usually reached the parameters, and then
        ``"rollback"`` puts the last decision's back. Parameters still finite (a
        ``torch.amp.GradScaler`` skipped the update, say) are left as they are."""
        if self.nonfinite == "rollback" and not self.tracker.params_all_finite():
            self._roll_back()
        self._back_off(f"non-finite training loss ({loss})")

    def _roll_back(self) -> None:
        self.tracker.restore_start()
        state = self.optimizer.state
        for param in self.tracker.params:
            state.pop(param, None)  # torch's optimizers start a parameter's state afresh
        self.n_rollbacks += 1

    @torch.inference_mode()  # no autograd bookkeeping: ~20% off a decision (measured)
    def _end_interval(self, user_step: int | None) -> None:
        self._flush_pending()
        progress = self.steps_done / self.total_steps
        val = None if self._interval_val is None else float(self._interval_val)
        run = self.tracker.end_interval_run(self.values, progress, val)
        if not self.tracker.params_finite and self.nonfinite == "rollback":
            self._roll_back()  # a finite loss, yet the parameters are no longer finite
            self._back_off("non-finite parameters")
        self.last_obs = self.features.observe_run(run)
        self._decide(self.last_obs)
        self._interval_val = None
        self._backed_off_in_interval = False
        self._update_due()
        self._record(
            loss=float(np.float32(run.train_loss)),  # as StepStats holds it
            val_loss=float("nan") if val is None else val,
            user_step=user_step,
        )

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
        self.values.update(self.space.apply_one(self.values, action.reshape(k)))
        # The coming interval's midpoint, where an annealing prior is read (as in the env).
        self.prior_progress = interval_midpoint(
            self.steps_done, self.control_interval, self.total_steps
        )
        self._apply_to_optimizer()

    def _on_skipped_update(self) -> None:
        self._back_off("non-finite gradient: the optimizer update was skipped")

    @torch.inference_mode()
    def _back_off(self, what: str) -> None:
        if self._backed_off_in_interval or "learning_rate" not in self.values:
            return
        self._backed_off_in_interval = True
        self.n_backoffs += 1
        spec = self.space["learning_rate"]
        old = float(self.optimizer.param_groups[0]["lr"])
        self.values["learning_rate"] = spec.clip_one(
            self.values["learning_rate"] / np.float32(BACKOFF_FACTOR)
        )
        self._apply_to_optimizer()
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            new = float(self.optimizer.param_groups[0]["lr"])
            if self.n_rollbacks:
                done = (
                    "the parameters went back to the last decision's, the optimizer's "
                    "per-parameter state was cleared and the learning rate was cut"
                )
                advice = "nonfinite='skip' loses only the bad update, at a cost per update"
            elif self.nonfinite == "rollback":
                done = "the parameters are still finite and the learning rate was cut"
                advice = "they go back to the last decision's if they stop being finite"
            else:
                done = "the learning rate was cut"
                advice = "if the model's parameters are already non-finite, restore a checkpoint"
            warnings.warn(
                f"{what} at step {self.steps_done + 1}: {done} {BACKOFF_FACTOR:g}x (from "
                f"{old:.3g} to {new:.3g}, at most once per {self.control_interval} steps); {advice}",
                stacklevel=4,
            )

    def in_effect(self) -> dict[str, float]:
        """Group 0's values for the current interval: the policy's values, times the
        annealing prior where the bundle's space has one."""
        scheduled = self.space.scheduled_one(self.values, self.prior_progress)
        return {name: float(v) for name, v in scheduled.items()}

    def _apply_to_optimizer(self) -> None:
        in_effect = self._in_effect = self.in_effect()
        for name in self.controlled:
            spec = self.space[name]
            value0 = in_effect[name]
            change = spec_change(spec, value0, self.base[name][0])
            for i, group in enumerate(self.optimizer.param_groups):
                # Group 0 holds the environment's float32 value; the float64 clamp only
                # keeps its rounding (e.g. 0.99 -> 0.99000001) inside the bounds.
                value = (
                    clip_to_spec(spec, value0)
                    if i == 0
                    else spec_move(spec, self.base[name][i], change)
                )
                if not math.isfinite(value):  # unreachable by construction; never write NaN
                    continue
                write_hparam(group, name, value)
        self._last_lr = self.get_last_lr()

    # -- history and wandb ------------------------------------------------------------

    def _user_step(self, step: int | None) -> int | None:
        if step is not None or self.step_fn is None:
            return step
        return _check_step(self.step_fn())

    def _record(self, loss: float, val_loss: float, user_step: int | None) -> None:
        in_effect = self._in_effect  # as just written to the optimizer
        entry = {
            "step": self.steps_done,
            "hyperparameters": in_effect,
            # The policy's own choice, before an annealing prior (the same without one).
            "policy_values": {name: float(v) for name, v in self.values.items()},
            "lrs": self.get_last_lr(),
            "loss": loss,
            "val_loss": val_loss,
        }
        self.history.append(entry)
        if self.wandb_run is None:
            return
        metrics: dict[str, float] = {f"schedule/{k}": v for k, v in in_effect.items()}
        if math.isfinite(loss):
            metrics["schedule/train_loss"] = loss
        if math.isfinite(val_loss):
            metrics["schedule/val_loss"] = val_loss
        metrics["schedule/step"] = self.steps_done
        self._log(metrics, user_step)
        if self.steps_done >= self.total_steps and not self._plot_logged:
            self._log_plot(user_step)  # the last decision: the schedule is complete

    def _log(self, metrics: dict[str, Any], user_step: int | None) -> None:
        from agents.common import tracking  # the one module that talks to wandb

        if user_step is None:
            # No step of the user's: ride along with their next row, never create one.
            tracking.log_to_run(self.wandb_run, metrics, commit=False)
            return
        if self._last_logged_step is not None and user_step < self._last_logged_step:
            if not self._warned_step_order:
                self._warned_step_order = True
                warnings.warn(
                    f"TuningScheduler: step={user_step} is below the step already logged "
                    f"({self._last_logged_step}); wandb would drop it, so it is not logged "
                    "(pass a step that never decreases)",
                    stacklevel=4,
                )
            return
        self._last_logged_step = user_step
        tracking.log_to_run(self.wandb_run, metrics, step=user_step)

    def _log_plot(self, user_step: int | None) -> None:
        from agents.common import tracking

        self._plot_logged = True
        steps = [h["step"] for h in self.history]
        lrs = [h["hyperparameters"].get("learning_rate", float("nan")) for h in self.history]
        step = user_step if user_step is not None else self._last_logged_step
        if (
            step is not None
            and self._last_logged_step is not None
            and step < self._last_logged_step
        ):
            step = None  # wandb would drop it: join the user's next row instead
        tracking.line_plot(
            self.wandb_run,
            "schedule/learning_rate_plot",
            steps,
            lrs,
            title="learning rate set by the tuning policy",
            xname="step",
            step=step,
            commit=None if step is not None else False,
        )

    # -- torch scheduler conventions ----------------------------------------------

    def get_last_lr(self) -> list[float | Tensor]:
        """The learning rate of every param group, as last set (floats)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float | Tensor]:
        """The learning rates in effect (the policy, not a formula, sets the next ones)."""
        return self.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue identically (save it with ``torch.save``)."""
        self._flush_pending()  # device losses of the interval so far, as floats
        interval_val = self._interval_val
        return {
            "total_steps": self.total_steps,
            "control_interval": self.control_interval,
            "steps_done": self.steps_done,
            "base_lrs": list(self.base_lrs),
            "controlled": list(self.controlled),
            "base": {k: list(v) for k, v in self.base.items()},
            "values": {k: float(v) for k, v in self.values.items()},
            "prior_progress": self.prior_progress,
            "interval_val": None if interval_val is None else float(interval_val),
            "backed_off_in_interval": self._backed_off_in_interval,
            "n_backoffs": self.n_backoffs,
            "n_rollbacks": self.n_rollbacks,
            "warned_nonfinite": self._warned_nonfinite,
            "plot_logged": self._plot_logged,
            "last_logged_step": self._last_logged_step,
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
        self._pending = PendingLosses()
        self._steps_flushed = int(state["steps_done"])
        self.base = {k: [float(x) for x in v] for k, v in state["base"].items()}
        if "base_lrs" in state:
            self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.values = {k: np.float32(v) for k, v in state["values"].items()}
        self.prior_progress = float(state.get("prior_progress", self.prior_progress))
        self._interval_val = state["interval_val"]
        self._backed_off_in_interval = bool(state["backed_off_in_interval"])
        self.n_backoffs = int(state["n_backoffs"])
        self.n_rollbacks = int(state.get("n_rollbacks", 0))
        self._warned_nonfinite = bool(state["warned_nonfinite"])
        self._plot_logged = bool(state.get("plot_logged", False))
        self._last_logged_step = state.get("last_logged_step")
        self.features.load_state_dict(state["features"])
        self.tracker.load_state_dict(state["tracker"])
        self._update_due()
        self.history = [dict(h) for h in state["history"]]
        self.last_obs = np.asarray(state["last_obs"], dtype=np.float32)
        self._apply_to_optimizer()

    # -- reporting ------------------------------------------------------------------

    def plot(self, path: str | os.PathLike[str]) -> str:
        """Write a PNG of the schedule (learning rates on a log axis, your start rate
        dashed) over the losses (log axis). Needs the ``plot`` extra (matplotlib).

        Returns:
            The path written (atomically: a temporary file renamed into place).
        """
        from agents.deploy.schedule_plot import plot_history

        return plot_history(self.history, path, start_lrs=[float(x) for x in self.base_lrs])

    def close(self, step: int | None = None) -> None:
        """End of training: log the schedule's plot to ``wandb_run`` unless the last
        decision already did, and detach the non-finite guard from the optimizer.

        Safe to call repeatedly. Call it when a run stops before ``total_steps``
        (otherwise the plot reaches wandb at the last decision by itself).

        Args:
            step: Your wandb step for the plot (default: ``step_fn()``, else the
                last step logged, else ``commit=False``: it joins your next row or
                the run's final one).
        """
        if self.guard is not None:
            self.guard.remove()
        if self.wandb_run is not None and not self._plot_logged:
            self._log_plot(self._user_step(_check_step(step)))

    def __repr__(self) -> str:
        values = {k: f"{float(v):.3g}" for k, v in self.values.items()}
        return (
            f"TuningScheduler(steps={self.steps_done}/{self.total_steps}, "
            f"control_interval={self.control_interval}, values={values})"
        )
