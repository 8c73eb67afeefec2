"""Lightning: a `Callback` that hands the losses to a `TuningScheduler` Lightning steps.

Return the scheduler from ``configure_optimizers`` as a step scheduler and add the
callback; nothing in your ``LightningModule`` changes (no ``lr_scheduler_step``
override)::

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        sched = TuningPolicy.load("default").scheduler(opt, total_steps=10_000)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = lightning.Trainer(max_steps=10_000, callbacks=[TuningLightningCallback()])

Lightning calls ``scheduler.step()`` right after each optimizer step and
``on_train_batch_end`` just after it: the callback then hands over that batch's
loss (``outputs["loss"]``), and the decision is the one ``step(loss)`` would
have made, written before the next optimizer step. After each validation run it
hands over ``trainer.callback_metrics[val_key]`` (what ``self.log("val_loss",
...)`` logged; sanity checks are skipped). At the end of training it calls
``close`` (the W&B plot, the non-finite guard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.common.extras import require
from agents.deploy.scheduler import TuningScheduler

Callback = require(
    "lightning.pytorch", extra="lightning", purpose="TuningLightningCallback"
).Callback

__all__ = ["TuningLightningCallback"]


def tuning_schedulers(trainer: Any) -> list[TuningScheduler]:
    """The `TuningScheduler` instances among the trainer's schedulers."""
    configs = getattr(trainer, "lr_scheduler_configs", None) or []
    return [c.scheduler for c in configs if isinstance(c.scheduler, TuningScheduler)]


class TuningLightningCallback(Callback):  # type: ignore[misc,valid-type]
    """Feeds every `TuningScheduler` of the trainer its training and validation losses.

    Args:
        val_key: The logged metric that is the validation loss (``self.log(val_key, ...)``
            in ``validation_step``); None hands over no validation loss.
    """

    def __init__(self, val_key: str | None = "val_loss") -> None:
        super().__init__()
        self.val_key = val_key

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return  # a training_step that returned None skipped this batch
        for sched in tuning_schedulers(trainer):
            sched.observe(loss)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.val_key is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.val_key)
        if value is None:
            return
        for sched in tuning_schedulers(trainer):
            sched.observe(val_loss=value)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        for sched in tuning_schedulers(trainer):
            sched.close()
