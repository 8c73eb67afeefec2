"""`TuningScheduler`'s checkpoint: what ``state_dict`` saves and ``load_state_dict`` restores.

One flat dict of plain values (floats, lists, CPU tensors): the clock, the
counters, the pending and owed losses, the policy's values, the non-finite
response's and the log's state, the features' and the tracker's. Saving reads
the pending device losses and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.deploy.losses import PendingLosses
from hpo_env.clock import DecisionClock

if TYPE_CHECKING:
    from agents.deploy.scheduler import TuningScheduler

__all__ = ["load_scheduler_state", "scheduler_state"]


def scheduler_state(sched: TuningScheduler) -> dict[str, Any]:
    """Everything a resumed run needs to continue identically (save it with ``torch.save``).

    Reads the interval's pending device losses (one transfer per device) and
    changes nothing: saving a checkpoint never changes training."""
    interval_val = sched._interval_val
    return {
        "total_steps": sched.total_steps,
        "control_interval": sched.control_interval,
        "steps_done": sched.steps_done,
        "pending_losses": sched._pending.peek(),
        "owed": sched._owed,
        "observed": None if sched._observed is None else float(sched._observed),
        "base_lrs": list(sched.base_lrs),
        "controlled": list(sched.controlled),
        "base": {k: list(v) for k, v in sched.base.items()},
        "values": {k: float(v) for k, v in sched.values.items()},
        "prior_progress": sched.prior_progress,
        "interval_val": None if interval_val is None else float(interval_val),
        "interval_val_step": sched._interval_val_step,
        "warned_overrun": sched._warned_overrun,
        **sched.response.state_dict(),
        **sched.log.state_dict(),
        "features": sched.features.state_dict(),
        "tracker": sched.tracker.state_dict(),
        "last_obs": sched.last_obs.tolist(),
    }


def load_scheduler_state(sched: TuningScheduler, state: Mapping[str, Any]) -> None:
    """Restore `state_dict` output and write the restored values into the optimizer."""
    controlled = tuple(state["controlled"])
    if controlled != sched.controlled:
        raise ValueError(
            f"the saved scheduler controlled {list(controlled)}, this one controls "
            f"{list(sched.controlled)}: resume with the same policy and optimizer type"
        )
    n_groups = len(sched.optimizer.param_groups)
    saved_groups = {len(v) for v in state["base"].values()} or {n_groups}
    if saved_groups != {n_groups}:
        raise ValueError(
            f"the saved scheduler had {saved_groups.pop()} param groups, this optimizer has {n_groups}"
        )
    sched.clock = DecisionClock(
        sched.space, int(state["total_steps"]), int(state["control_interval"])
    )
    sched._pending = PendingLosses()
    pending = [float(x) for x in state.get("pending_losses", [])]
    sched._pending.restore(pending)
    sched._owed = int(state.get("owed", 0))
    sched._observed = state.get("observed")
    sched._measured = None  # measured again at the decision
    sched._steps_flushed = int(state["steps_done"]) - len(pending) - sched._owed
    sched.base = {k: [float(x) for x in v] for k, v in state["base"].items()}
    if "base_lrs" in state:
        sched.base_lrs = [float(x) for x in state["base_lrs"]]
    sched.values = {k: np.float32(v) for k, v in state["values"].items()}
    sched.prior_progress = float(state.get("prior_progress", sched.prior_progress))
    sched._interval_val = state["interval_val"]
    sched._interval_val_step = state.get("interval_val_step")
    sched._warned_overrun = bool(state.get("warned_overrun", False))
    sched.response.load_state_dict(state)
    sched.log.load_state_dict(state)
    sched.features.load_state_dict(state["features"])
    sched.tracker.load_state_dict(state["tracker"])
    sched._update_due()
    sched.last_obs = np.asarray(state["last_obs"], dtype=np.float32)
    sched._apply_to_optimizer()
