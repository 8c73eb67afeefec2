"""The PNG a `TuningScheduler` draws of its own history (``sched.plot(path)``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.common.extras import require
from agents.common.files import atomic_savefig


def plot_history(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    start_lrs: Sequence[float],
    title: str = "learning rate set by the tuning policy",
) -> str:
    """Learning rates (log axis, the user's start rates dashed) over the losses (log axis).

    Args:
        history: `TuningScheduler.history`.
        path: Where to write the PNG (atomically).
        start_lrs: Every param group's learning rate before the policy's first decision.
        title: The figure's title.

    Returns:
        The path written.

    Raises:
        MissingExtraError: matplotlib (the ``plot`` extra) is not installed.
    """
    matplotlib = require("matplotlib", extra="plot", purpose="TuningScheduler.plot()")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (ax_lr, ax_loss) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    lrs = np.array([h["lrs"] for h in history])
    for i in range(lrs.shape[1]):
        (line,) = ax_lr.step(steps, lrs[:, i], where="post", label=f"group {i}")
        ax_lr.axhline(
            start_lrs[i],
            color=line.get_color(),
            ls="--",
            lw=1,
            label=f"your start lr ({start_lrs[i]:.3g})" if lrs.shape[1] == 1 else None,
        )
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(title)
    ax_lr.legend(fontsize=8)
    train = [(h["step"], h["loss"]) for h in history[1:] if _positive(h["loss"])]
    if train:
        ax_loss.plot(*zip(*train), label="train (interval mean)")
    # A validation loss at the step it was passed (an older history: its decision's).
    val = [
        (h["step"] if h.get("val_step") is None else h["val_step"], h["val_loss"])
        for h in history
        if _positive(h["val_loss"])
    ]
    if val:
        ax_loss.plot(*zip(*val), "o-", label="validation")
    if train or val:
        # Losses span decades; a log axis keeps the end of the run readable.
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (log)")
    fig.tight_layout()
    path = os.fspath(path)
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0
