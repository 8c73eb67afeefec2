"""`ScheduleLog`: a deployed scheduler's decisions, as history, W&B rows and a plot.

The scheduler hands it one entry per decision (`TuningScheduler.history`'s
format); it keeps them, logs them to a wandb run at the user's own step (or
with ``commit=False``, joining the user's next row: it never creates a wandb
step itself) and logs the learning-rate line plot once, at the last decision
or at ``close``. Every wandb call goes through `agents.common.tracking`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ScheduleLog", "check_step"]


def check_step(step: Any) -> int | None:
    """``step`` as an int (the user's own step counter), or None.

    Raises:
        TypeError: Not a non-negative int.
    """
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TypeError(f"step must be a non-negative int (your own step counter), got {step!r}")
    return int(step)


class ScheduleLog:
    """One entry per decision, mirrored to an optional wandb run.

    Args:
        wandb_run: A wandb run (or None: history only).
        step_fn: Returns the user's current wandb step, for calls without ``step=``.

    Attributes:
        history: One dict per decision (see `TuningScheduler`).
        last_logged_step: The last user step a row was logged at.
        plot_logged: Whether the line plot reached wandb.
        warned_step_order: Whether the one "step went backwards" warning was given.
    """

    def __init__(self, wandb_run: Any | None, step_fn: Callable[[], int] | None) -> None:
        if step_fn is not None and not callable(step_fn):
            raise TypeError(f"step_fn must be a callable returning an int, got {step_fn!r}")
        self.wandb_run = wandb_run
        self.step_fn = step_fn
        self.history: list[dict[str, Any]] = []
        self.last_logged_step: int | None = None
        self.plot_logged = False
        self.warned_step_order = False

    def user_step(self, step: int | None) -> int | None:
        """``step``, else ``step_fn()`` when one was given, else None."""
        if step is not None or self.step_fn is None:
            return step
        return check_step(self.step_fn())

    def record(self, entry: dict[str, Any], *, last: bool, user_step: int | None) -> None:
        """Keep one decision's entry; log it (and the plot, at the ``last`` decision)."""
        self.history.append(entry)
        if self.wandb_run is None:
            return
        loss, val_loss = entry["loss"], entry["val_loss"]
        metrics: dict[str, float] = {
            f"schedule/{k}": v for k, v in entry["hyperparameters"].items()
        }
        if math.isfinite(loss):
            metrics["schedule/train_loss"] = loss
        if math.isfinite(val_loss):
            metrics["schedule/val_loss"] = val_loss
        metrics["schedule/step"] = entry["step"]
        self._log(metrics, user_step)
        if last and not self.plot_logged:
            self.log_plot(user_step)  # the last decision: the schedule is complete

    def _log(self, metrics: dict[str, Any], user_step: int | None) -> None:
        from agents.common import tracking  # the one module that talks to wandb

        if user_step is None:
            # No step of the user's: ride along with their next row, never create one.
            tracking.log_to_run(self.wandb_run, metrics, commit=False)
            return
        if self.last_logged_step is not None and user_step < self.last_logged_step:
            if not self.warned_step_order:
                self.warned_step_order = True
                warnings.warn(
                    f"TuningScheduler: step={user_step} is below the step already logged "
                    f"({self.last_logged_step}); wandb would drop it, so it is not logged "
                    "(pass a step that never decreases)",
                    stacklevel=5,
                )
            return
        self.last_logged_step = user_step
        tracking.log_to_run(self.wandb_run, metrics, step=user_step)

    def log_plot(self, user_step: int | None) -> None:
        """The learning rate over the decisions, as a wandb line plot (once)."""
        from agents.common import tracking

        self.plot_logged = True
        steps = [h["step"] for h in self.history]
        lrs = [h["hyperparameters"].get("learning_rate", float("nan")) for h in self.history]
        step = user_step if user_step is not None else self.last_logged_step
        if step is not None and self.last_logged_step is not None and step < self.last_logged_step:
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

    def close(self, step: int | None) -> None:
        """Log the plot unless the last decision did (safe to repeat)."""
        if self.wandb_run is not None and not self.plot_logged:
            self.log_plot(self.user_step(check_step(step)))

    def plot(self, path: str | os.PathLike[str], start_lrs: list[float]) -> str:
        """Write the history's PNG (`agents.deploy.schedule_plot.plot_history`)."""
        from agents.deploy.schedule_plot import plot_history

        return plot_history(self.history, path, start_lrs=start_lrs)

    # -- checkpointing --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "plot_logged": self.plot_logged,
            "last_logged_step": self.last_logged_step,
            "warned_step_order": self.warned_step_order,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.plot_logged = bool(state.get("plot_logged", False))
        self.last_logged_step = state.get("last_logged_step")
        self.warned_step_order = bool(state.get("warned_step_order", False))
        self.history = [dict(h) for h in state["history"]]
