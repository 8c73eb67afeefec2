"""Losses handed to the scheduler: checked on arrival, read once per decision.

``sched.step(loss)`` accepts a Python or NumPy number or a one-element tensor
(detached here; one that requires grad or lives on an accelerator is fine).
A tensor is *not* read when it arrives: reading an accelerator tensor makes
the host wait for the device. `PendingLosses` keeps the interval's tensors
where they are and reads them all at the decision with one transfer per
device, so a run pays at most one synchronisation per decision.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

LossLike = float | Tensor


def check_loss(value: Any, name: str = "loss") -> LossLike:
    """``value`` as a float or a detached 0-d tensor; raises on anything else.

    Raises:
        TypeError: not a real number, a NumPy scalar/one-element array or a tensor
            (strings such as ``"0.5"`` are refused: pass ``float(s)``).
        ValueError: a tensor or array with more than one element, or a complex one.
    """
    if type(value) is float:  # the common case (``loss.item()``), first and cheapest
        return value
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a one-element tensor (the minibatch's mean loss), "
                f"got shape {tuple(value.shape)}"
            )
        if value.is_complex():
            raise ValueError(f"{name} must be a real number, got a {value.dtype} tensor")
        return value.detach().reshape(())
    if isinstance(value, np.ndarray) and value.size == 1 and np.isrealobj(value):
        return float(value.reshape(()))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a float or a one-element torch.Tensor, "
            f"got {type(value).__name__} {value!r}"
        )
    return float(value)


class PendingLosses:
    """The current interval's losses, floats and device tensors in arrival order."""

    def __init__(self) -> None:
        self.items: list[LossLike] = []
        self.tensor_positions: list[int] = []
        """Where the tensors are in `items` (none, in a loop that passes ``loss.item()``)."""

    def __len__(self) -> int:
        return len(self.items)

    def append(self, loss: LossLike) -> None:
        if type(loss) is not float:
            self.tensor_positions.append(len(self.items))
        self.items.append(loss)

    def restore(self, losses: list[float]) -> None:
        """Losses saved by `peek` (a checkpoint's), pending again: as float64 CPU
        tensors (exact), so that a non-finite one is judged when the interval is
        read, as it would have been without the checkpoint."""
        for loss in losses:
            self.append_tensor(torch.tensor(float(loss), dtype=torch.float64))

    def append_tensor(self, loss: Tensor) -> None:
        """`append` for a tensor (`check_loss`'s output, or a detached real 0-d one)."""
        items = self.items
        self.tensor_positions.append(len(items))
        items.append(loss)

    def read(self) -> list[float]:
        """All pending losses as floats (one device transfer per device); clears them."""
        out = self.peek()
        self.items, self.tensor_positions = [], []
        return out

    def peek(self) -> list[float]:
        """All pending losses as floats (one device transfer per device), kept pending."""
        items, positions = self.items, self.tensor_positions
        if not positions:
            return list(items)  # type: ignore[arg-type]  # floats only: nothing to read
        out: list[Any] = list(items)
        by_device: dict[torch.device, list[int]] = {}
        for i in positions:
            by_device.setdefault(items[i].device, []).append(i)  # type: ignore[union-attr]
        for indices in by_device.values():
            tensors: list[Tensor] = [items[i] for i in indices]  # type: ignore[misc]
            dtypes = {t.dtype for t in tensors}
            dtype = dtypes.pop()
            for other in dtypes:
                dtype = torch.promote_types(dtype, other)
            if not dtype.is_floating_point:
                dtype = torch.float32
            # One conversion per tensor only where dtypes differ (a loop's losses rarely
            # do): ~5 us a tensor in a loop that the training step left with cold caches.
            if any(t.dtype != dtype for t in tensors):
                tensors = [t.to(dtype) for t in tensors]
            values = torch.stack(tensors).tolist()
            for i, v in zip(indices, values):
                out[i] = float(v)
        return out
