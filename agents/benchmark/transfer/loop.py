"""The one plain-PyTorch training loop every method runs in.

train → (at the cadence) evaluate → hand the losses to the method; learning
rates and validation losses are recorded. A run diverges when a training or
validation loss is non-finite or the validation loss exceeds
`DIVERGENCE_FACTOR` x the first one; its objective is then
``first_val * DIVERGENCE_FACTOR``: finite, and worse than any run that did not
diverge, so it ranks last without poisoning means or ratios.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from agents.benchmark.transfer.data import Dataset, load_dataset
from agents.benchmark.transfer.models import build_model
from agents.benchmark.transfer.suite import TaskSpec

DIVERGENCE_FACTOR = 100.0
"""A validation loss above this multiple of the first one counts as divergence."""
MAX_LR_POINTS = 200
"""Learning-rate curve points kept per run (evenly spaced; keeps results.json small)."""


@dataclasses.dataclass
class RunResult:
    """One run's outcome and curves."""

    objective: float
    """Final validation loss, or ``first_val * DIVERGENCE_FACTOR`` if the run diverged."""
    first_val: float
    """Validation loss before the first update (the same for every method on a seed)."""
    diverged: bool
    val_steps: list[int]
    val_losses: list[float]
    lr_steps: list[int]
    lrs: list[float]
    """Effective learning rate used by each recorded update."""
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def loss_function(data: Dataset, output: Tensor, target: Tensor) -> Tensor:
    if data.kind == "regression":
        return nn.functional.mse_loss(output, target)
    if data.kind == "language":
        return nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    return nn.functional.cross_entropy(output, target)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset) -> float:
    model.eval()
    loss = float(loss_function(data, model(data.x_val), data.y_val))
    model.train()
    return loss


def batch_order(n_examples: int, batch_size: int, n_updates: int, seed: int) -> Tensor:
    """[n_updates, batch_size] example indices: shuffled epochs, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, n_examples)
    per_epoch = n_examples // batch_size  # drop the ragged last batch of each epoch
    n_epochs = -(-n_updates // per_epoch)
    epochs = [
        torch.randperm(n_examples, generator=generator)[: per_epoch * batch_size]
        for _ in range(n_epochs)
    ]
    return torch.cat(epochs).view(-1, batch_size)[:n_updates]


def train_run(task: TaskSpec, method: Any, seed: int, lr_multiplier: float = 1.0) -> RunResult:
    """Train ``task`` once with ``method`` from ``task.start_lr * lr_multiplier``.

    The data split, the initial weights and the batches depend only on
    ``seed``: every method sees the same run.
    """
    started = time.perf_counter()
    data = load_dataset(task.data, seed, seq_len=task.seq_len)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(task.model, data, task.width, task.seq_len)
    batches = batch_order(len(data.x_train), task.batch_size, task.n_updates, seed + 1)
    first_val = evaluate(model, data)
    limit = first_val * DIVERGENCE_FACTOR
    control = method.build(model.parameters(), task, task.start_lr * lr_multiplier)
    control.train_mode()
    val_steps, val_losses, lr_steps, lrs = [0], [first_val], [], []
    lr_every = max(1, task.n_updates // MAX_LR_POINTS)
    diverged = False
    for step in range(1, task.n_updates + 1):
        index = batches[step - 1]
        loss = loss_function(data, model(data.x_train[index]), data.y_train[index])
        control.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        control.before_update()
        if step % lr_every == 0 or step == 1:
            lr_steps.append(step)
            lrs.append(control.lr)
        control.optimizer.step()
        loss_value = loss.item()
        val = None
        if step % task.val_every == 0 or step == task.n_updates:
            control.eval_mode()
            val = evaluate(model, data)
            control.train_mode()
            val_steps.append(step)
            val_losses.append(val)
        if not math.isfinite(loss_value) or (val is not None and not val <= limit):
            diverged = True  # `not val <= limit` is also true for NaN
            break
        control.after_update(loss_value, val)
    objective = limit if diverged else val_losses[-1]
    return RunResult(
        objective=float(objective),
        first_val=float(first_val),
        diverged=diverged,
        val_steps=val_steps,
        val_losses=[v if math.isfinite(v) else None for v in val_losses],  # type: ignore[misc]
        lr_steps=lr_steps,
        lrs=lrs,
        wall_s=time.perf_counter() - started,
    )
