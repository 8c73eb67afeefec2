"""`TuningScheduler`: a deployed tuning policy driving a plain PyTorch optimizer.

It is a ``torch.optim.lr_scheduler.LRScheduler`` (``last_epoch``, ``base_lrs``,
``get_last_lr``, ``state_dict`` / ``load_state_dict`` behave as torch documents
them) whose ``step`` takes the update's loss, like ``ReduceLROnPlateau``, or,
for loops that call ``step()`` themselves (``ChainedScheduler``,
``SequentialLR``, Lightning, the Hugging Face Trainer), gets it from
``observe(loss)``. It reproduces the environment's control loop on one run:

- the first decision is made at construction, before any update, from the
  hyperparameters alone (like `FeatureExtractor.reset` in the environment);
- then, after every ``control_interval`` calls of ``step(loss)``, a
  `StatsTracker` summarises the interval as `StepStats`, the policy's own
  `FeatureExtractor` turns them into an observation and the policy's action
  moves the hyperparameters by a bounded multiplicative step;
- where the bundle's space carries an annealing prior (`hpo_env.space.PRIORS`),
  the optimizer receives the policy's value times the prior read at the coming
  interval's midpoint, while the policy keeps observing its own value (as in
  the environment). The environment's `hpo_env.clock.DecisionClock` does
  both (counted in updates here). `in_effect` gives the values the optimizer uses.

Several parameter groups keep their ratios: the controlled value is parameter
group 0's (that is what the policy observes, evolving exactly as in the
environment); every other group is moved by the same factor (log-scale
hyperparameters) or offset (linear ones) from its own starting value, clipped
to the bundle's bounds.

This module is the decision loop and torch's conventions; its other jobs live
beside it: NaN/inf (`nonfinite`, `guard`), history, W&B rows and plot
(`schedule_log`, `schedule_plot`), the checkpoint (`scheduler_state`), the run's
statistics (`run_stats`), losses (`losses`), param-group writes
(`optimizer_hparams`) and the decision budget (`budget`).

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
from agents.deploy.budget import (
    DEFAULT_DECISIONS_PER_RUN,
    decisions_per_run,
    resolve_control_interval,
)
from agents.deploy.losses import PendingLosses, check_loss
from agents.deploy.nonfinite import (
    BACKOFF_FACTOR,
    NONFINITE_MODES,
    NonFiniteResponse,
    resolve_nonfinite,
)
from agents.deploy.optimizer_hparams import (
    check_supported,
    start_values,
    write_group_values,
    write_hyperparameters,
)
from agents.deploy.run_stats import StatsTracker
from agents.deploy.schedule_log import ScheduleLog, check_step
from agents.deploy.scheduler_state import load_scheduler_state, scheduler_state
from hpo_env.clock import DecisionClock
from hpo_env.space import HyperparameterSpace

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


class TuningScheduler(LRScheduler):
    """Sets an optimizer's hyperparameters from a tuning policy; a torch ``LRScheduler``.

    Call ``step(loss)`` once after every ``optimizer.step()`` (or ``observe(loss)``
    and ``step()``); call `close` when training ends (it logs the schedule's plot to
    ``wandb_run`` if the last decision has not, and detaches the non-finite guard).
    Lightning: `agents.deploy.lightning.TuningCallback`; Hugging Face:
    `agents.deploy.hf.TuningTrainerCallback`.

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
        check_supported(optimizer)
        if (
            isinstance(total_steps, bool)
            or not isinstance(total_steps, (int, np.integer))
            or total_steps < 1
        ):
            raise ValueError(
                f"total_steps must be a positive int (the run's update budget), got {total_steps!r}"
            )
        self.log = ScheduleLog(wandb_run, step_fn)
        self.nonfinite = resolve_nonfinite(nonfinite, skip_nonfinite)
        self.policy = policy
        self.optimizer = optimizer
        self.deterministic = deterministic
        self.space: HyperparameterSpace = policy.space
        # The budget, the interval, the prior's position and action -> values in effect.
        self.clock = DecisionClock(
            self.space,
            int(total_steps),
            resolve_control_interval(control_interval, int(total_steps), policy),
        )

        groups = optimizer.param_groups
        # Controlled and present: in the bundle's space and readable in every group.
        self.base: dict[str, list[float]] = start_values(self.space, groups)
        self.controlled: tuple[str, ...] = tuple(self.base)
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
        self.prior_progress = 0.0  # where the clock read the prior for this interval
        self._in_effect: dict[str, float] = {}  # what _apply_to_optimizer last wrote
        self._interval_val: float | Tensor | None = None
        self._interval_val_step: int | None = None  # the step it was passed at
        self._warned_overrun = False
        # `observe` + argument-free `step` (frameworks): a loss observed before its
        # update's step(), updates stepped before their loss, and the interval's vector
        # statistics measured at its last update while its losses are still owed.
        self._observed: float | Tensor | None = None
        self._owed = 0
        self._measured: tuple[float, float, float] | None = None

        self.tracker = StatsTracker(optimizer)
        self.features = policy.feature_extractor(1)
        with torch.inference_mode():
            self.last_obs = self.features.reset(self.values).numpy()
            self._decide(self.last_obs)
        self._record(loss=float("nan"), val_loss=float("nan"), user_step=self.log.user_step(None))
        self._update_due()
        self.response = NonFiniteResponse(
            self.nonfinite, optimizer, self.tracker, self._on_skipped_update
        )

    # -- the clock and the jobs beside the decision -----------------------------

    @property
    def total_steps(self) -> int:
        """The run's update budget (the clock's)."""
        return int(self.clock.total_steps)

    @property
    def control_interval(self) -> int:
        """Updates per decision (the clock's)."""
        return self.clock.control_interval

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per decision (`ScheduleLog.history`)."""
        return self.log.history

    @property
    def wandb_run(self) -> Any | None:
        return self.log.wandb_run

    @property
    def guard(self) -> Any | None:
        """The ``"skip"`` mode's `agents.deploy.guard.NonFiniteGuard`, else None."""
        return self.response.guard

    @property
    def n_backoffs(self) -> int:
        return self.response.n_backoffs

    @property
    def n_rollbacks(self) -> int:
        return self.response.n_rollbacks

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
        return self._steps_flushed + len(self._pending.items) + self._owed

    @steps_done.setter
    def steps_done(self, value: int) -> None:
        self._steps_flushed = int(value) - len(self._pending.items) - self._owed
        self._update_due()

    @property
    def _step_count(self) -> int:
        """torch's count of scheduler steps, the constructor's included."""
        return self.steps_done + 1

    @_step_count.setter
    def _step_count(self, value: int) -> None:
        pass  # derived from steps_done; `SequentialLR` resets it before its initial step

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
        return self.response.n_skipped

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
        if loss is None:
            if getattr(self, "_is_initial", False):  # `SequentialLR`'s initial step
                self.last_epoch += 1  # torch's count, which SequentialLR first undid
                self._apply_to_optimizer()  # it reset the rates: this interval's again
                return
            loss, self._observed = self._observed, None
            if loss is None:
                self._step_owed(val_loss, step)
                return
        self._take(loss, val_loss, step)
        if len(self._pending.items) >= self._due:
            self._interval_full_or_overrun(check_step(step))

    def observe(self, loss: Any = None, val_loss: Any = None) -> None:
        """Hand over a training loss (and/or a validation loss) without stepping.

        For loops that call ``step()`` themselves (Lightning, the HF Trainer,
        ``ChainedScheduler``, ``SequentialLR``), before or after that update's ``step()``.
        Losses and updates pair up in order: an update stepped before its loss is
        decided on when the loss arrives (its gradient statistics are read at the
        update itself), so a decision is the one ``step(loss)`` would have made
        (several losses before one ``step()``: the latest is that update's).

        Args:
            loss: The latest update's training loss (a float or one-element tensor).
            val_loss: A validation loss measured now, if any.

        Raises:
            TypeError: Neither loss given, or one of the wrong type.
        """
        if (
            self._owed
            and type(loss) is Tensor
            and val_loss is None
            and loss.dim() == 0
            and not loss.is_complex()
        ):
            # Lightning's order (``step()``, then the batch's loss tensor): detached and
            # kept unread until the decision, as ``step(loss)`` does. `check_loss`'s
            # general path costs ~6 us more per update, ~30 us right after a training step.
            self._owed -= 1
            self._pending.append_tensor(loss.detach())
            if len(self._pending.items) >= self._due:
                self._interval_full_or_overrun(None)
            return
        if loss is None and val_loss is None:
            raise TypeError("TuningScheduler.observe needs loss=, val_loss= or both")
        checked = None if loss is None else check_loss(loss, "loss")
        if val_loss is not None:
            self._interval_val = check_loss(val_loss, "val_loss")
            # At the update the loss belongs to: the coming one, or the oldest owed.
            at = 0 if checked is None else 1 - self._owed if self._owed else 1
            self._interval_val_step = self.steps_done + at
        if checked is None:
            return
        if not self._owed:
            self._observed = checked  # this update's, for its coming step()
            return
        self._owed -= 1
        if type(checked) is float and not _NEG_INF < checked < _INF:
            self._on_nonfinite_loss(checked)  # a tensor is judged when read
        self._pending.append(checked)
        if len(self._pending.items) >= self._due:
            self._interval_full_or_overrun(None)

    def _step_owed(self, val_loss: Any, step: Any) -> None:
        """``step()`` before its loss: count it; measure the vectors at the interval's end."""
        if val_loss is not None:
            self.observe(val_loss=val_loss)
        check_step(step)
        if self._owed >= self.control_interval:
            raise TypeError(
                "TuningScheduler.step needs this update's training loss: call sched.step(loss), "
                f"or sched.observe(loss) for every update ({self._owed + 1} updates stepped "
                "without one; Hugging Face: TrainingArguments(logging_steps=1) with "
                "agents.deploy.hf.TuningTrainerCallback)"
            )
        self._owed += 1
        if self._measured is None and (
            self.tracker.n_recorded + len(self._pending) + self._owed >= self.control_interval
        ):
            with torch.inference_mode():
                self._measured = self.tracker.measure()

    def _take(self, loss: Any, val_loss: Any, step: Any) -> None:
        """`step`'s inputs other than one finite float: checked, converted, recorded."""
        checked = check_loss(loss, "loss")
        checked_val = None if val_loss is None else check_loss(val_loss, "val_loss")
        check_step(step)
        if isinstance(checked, float) and not math.isfinite(checked):
            self._on_nonfinite_loss(checked)
        self._pending.append(checked)
        if checked_val is not None:
            self._interval_val = checked_val
            self._interval_val_step = self.steps_done

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
            self._end_interval(self.log.user_step(user_step))

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
        self.response.after_nonfinite_loss()
        self._back_off(f"non-finite training loss ({loss})")

    @torch.inference_mode()  # no autograd bookkeeping: ~20% off a decision (measured)
    def _end_interval(self, user_step: int | None) -> None:
        self._flush_pending()
        progress = self.clock.progress(self.steps_done)
        val = None if self._interval_val is None else float(self._interval_val)
        run = self.tracker.end_interval_run(self.values, progress, val, self._measured)
        self._measured = None
        if self.response.at_decision():  # a finite loss, yet non-finite parameters
            self._back_off("non-finite parameters")
        self.last_obs = self.features.observe_run(run)
        self._decide(self.last_obs)
        val_step, self._interval_val, self._interval_val_step = self._interval_val_step, None, None
        self.response.backed_off_in_interval = False
        self._update_due()
        self._record(
            loss=float(np.float32(run.train_loss)),  # as StepStats holds it
            val_loss=float("nan") if val is None else val,
            user_step=user_step,
            val_step=val_step,
        )

    def _decide(self, obs: np.ndarray) -> None:
        action = self.policy.act(obs, deterministic=self.deterministic)
        decision = self.clock.decide_one(self.values, action, steps_done=self.steps_done)
        self.values.update(decision.chosen)
        self.prior_progress = decision.position  # the coming interval's midpoint
        self._apply_to_optimizer()

    def _on_skipped_update(self) -> None:
        self._back_off("non-finite gradient: the optimizer update was skipped")

    @torch.inference_mode()
    def _back_off(self, what: str) -> None:
        if "learning_rate" not in self.values or not self.response.claim_backoff():
            return
        spec = self.space["learning_rate"]
        old = float(self.optimizer.param_groups[0]["lr"])
        self.values["learning_rate"] = spec.clip_one(
            self.values["learning_rate"] / np.float32(BACKOFF_FACTOR)
        )
        self._apply_to_optimizer()
        new = float(self.optimizer.param_groups[0]["lr"])
        self.response.warn_once(what, self.steps_done + 1, old, new, self.control_interval)

    def in_effect(self) -> dict[str, float]:
        """Group 0's values this interval: the policy's, times the prior where there is one."""
        return self.clock.in_effect_one(self.values, self.prior_progress)

    def _apply_to_optimizer(self) -> None:
        in_effect = self._in_effect = self.in_effect()
        write_group_values(self.optimizer.param_groups, self.space, self.base, in_effect)
        self._last_lr = self.get_last_lr()

    # -- history and wandb ------------------------------------------------------------

    def _record(
        self, loss: float, val_loss: float, user_step: int | None, val_step: int | None = None
    ) -> None:
        entry = {
            "step": self.steps_done,
            "hyperparameters": self._in_effect,  # as just written to the optimizer
            # The policy's own choice, before an annealing prior (the same without one).
            "policy_values": {name: float(v) for name, v in self.values.items()},
            "lrs": self.get_last_lr(),
            "loss": loss,
            "val_loss": val_loss,
            "val_step": val_step,  # the step the validation loss was passed at
        }
        self.log.record(entry, last=self.steps_done >= self.total_steps, user_step=user_step)

    # -- torch scheduler conventions ----------------------------------------------

    def get_last_lr(self) -> list[float | Tensor]:
        """The learning rate of every param group, as last set (floats)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float | Tensor]:
        """The rates the policy set last (`SequentialLR` writes them at its milestone)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue identically; saving changes nothing."""
        return scheduler_state(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` output and write the restored values into the optimizer."""
        load_scheduler_state(self, state)

    # -- reporting ------------------------------------------------------------------

    def plot(self, path: str | os.PathLike[str]) -> str:
        """Write a PNG of the schedule (learning rates on a log axis, your start rate
        dashed) over the losses (log axis). Needs the ``plot`` extra (matplotlib).

        Returns:
            The path written (atomically: a temporary file renamed into place).
        """
        return self.log.plot(path, start_lrs=[float(x) for x in self.base_lrs])

    def close(self, step: int | None = None) -> None:
        """End of training: log the schedule's plot to ``wandb_run`` unless the last
        decision already did, and detach the non-finite guard from the optimizer.

        Safe to repeat; needed when a run stops before ``total_steps``.

        Args:
            step: Your wandb step for the plot (default: ``step_fn()``, else the
                last step logged, else ``commit=False``: it joins your next row or
                the run's final one).
        """
        self.response.remove()
        self.log.close(step)

    def __repr__(self) -> str:
        values = {k: f"{float(v):.3g}" for k, v in self.values.items()}
        return (
            f"TuningScheduler(steps={self.steps_done}/{self.total_steps}, "
            f"control_interval={self.control_interval}, values={values})"
        )
