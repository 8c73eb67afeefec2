"""Hugging Face Trainer: a `TrainerCallback` that hands the logged losses to a `TuningScheduler`.

Give the Trainer your optimizer and the scheduler, log every step, add the callback::

    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    sched = TuningPolicy.load("default").scheduler(opt, total_steps=args.max_steps)
    trainer = Trainer(model, args, train_dataset=ds, optimizers=(opt, sched),
                      callbacks=[TuningTrainerCallback()])

with ``TrainingArguments(max_steps=..., logging_steps=1)``. The Trainer calls
``lr_scheduler.step()`` after each optimizer step (the scheduler reads the
update's gradient statistics then) and ``on_log`` a moment later, with the
step's ``loss``: the callback hands it over, and the decision is the one
``step(loss)`` would have made, written before the next optimizer step.
Logged every ``n`` steps instead, the logged mean stands for each of the
``n`` updates it covers and a decision waits for it (so keep ``n`` at most
the control interval). ``eval_loss`` (an evaluation run) is handed over as
the validation loss. ``on_train_end`` calls ``close``.
"""

from __future__ import annotations

from typing import Any

from agents.common.extras import require
from agents.deploy.scheduler import TuningScheduler
from hpo_env.errors import ConfigError

TrainerCallback = require(
    "transformers", extra="hf", purpose="TuningTrainerCallback"
).TrainerCallback

__all__ = ["TuningTrainerCallback"]


class TuningTrainerCallback(TrainerCallback):  # type: ignore[misc,valid-type]
    """Feeds the Trainer's `TuningScheduler` the logged ``loss`` and ``eval_loss``.

    Args:
        scheduler: The scheduler; default: the Trainer's own ``lr_scheduler``.
    """

    def __init__(self, scheduler: TuningScheduler | None = None) -> None:
        self.scheduler = scheduler
        self._fed_step = 0

    def _scheduler(self, kwargs: dict[str, Any]) -> TuningScheduler | None:
        sched = self.scheduler if self.scheduler is not None else kwargs.get("lr_scheduler")
        return sched if isinstance(sched, TuningScheduler) else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sched = self._scheduler(kwargs)
        if sched is None:
            raise ConfigError(
                "TuningTrainerCallback found no TuningScheduler: pass "
                "Trainer(optimizers=(opt, policy.scheduler(opt, total_steps=...))) or "
                "TuningTrainerCallback(scheduler=sched)"
            )
        every = int(getattr(args, "logging_steps", 1) or 1)
        strategy = getattr(args, "logging_strategy", "steps")
        strategy = getattr(strategy, "value", strategy)
        if strategy != "steps" or every > sched.control_interval:
            raise ConfigError(
                f"TuningTrainerCallback needs the training loss at least every "
                f"{sched.control_interval} steps (the control interval), got "
                f"logging_strategy={strategy!r}, logging_steps={every}: "
                "pass TrainingArguments(logging_steps=1)"
            )
        self._fed_step = int(state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        sched = self._scheduler(kwargs)
        if sched is None or not logs:
            return
        if "loss" in logs:
            # The logged mean covers every update since the last log.
            for _ in range(int(state.global_step) - self._fed_step):
                sched.observe(float(logs["loss"]))
            self._fed_step = int(state.global_step)
        if "eval_loss" in logs:
            sched.observe(val_loss=float(logs["eval_loss"]))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sched = self._scheduler(kwargs)
        if sched is not None:
            sched.close()
