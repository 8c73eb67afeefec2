"""`NonFiniteGuard`: an optimizer update with a NaN/inf gradient never happens.

A scheduler is stepped *after* ``optimizer.step()``, too late to stop a
non-finite loss's gradient from reaching the weights. This guard is an
optimizer step pre-hook (``Optimizer.register_step_pre_hook``): before every
update it checks that every gradient is finite and, when one is not, drops
the gradients (``p.grad = None``: every ``torch.optim`` optimizer skips a
parameter without a gradient, so weights, momenta and Adam's step counts stay
as they were) and tells its owner, who backs the learning rate off.

Cost: one fused max-abs reduction per device and dtype, and one host sync per
update (like ``torch.amp.GradScaler``'s inf check); free on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def all_finite(grads: list[Tensor]) -> bool:
    """Whether every element of every tensor is finite (one sync per device and dtype).

    The max-abs norm is used rather than the 2-norm: it is NaN or inf exactly when
    an element is, and cannot overflow on large finite gradients.
    """
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for g in grads:
        dense = g.coalesce().values() if g.is_sparse else g
        buckets.setdefault((dense.device, dense.dtype), []).append(dense)
    for tensors in buckets.values():
        norms = torch._foreach_norm(tensors, float("inf"))
        if not bool(torch.stack(norms).isfinite().all()):
            return False
    return True


class NonFiniteGuard:
    """Skips every ``optimizer.step()`` whose gradients are not all finite.

    Args:
        optimizer: The optimizer to guard.
        on_skip: Called after an update was skipped (e.g. to back the rate off).

    Attributes:
        n_skipped: Updates skipped so far.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> guard = NonFiniteGuard(opt, on_skip=lambda: None)
        >>> model(torch.tensor([[float("nan"), 0.0]])).sum().backward()
        >>> opt.step()
        >>> guard.n_skipped, bool(model.weight.isfinite().all())
        (1, True)
        >>> guard.remove()
    """

    def __init__(self, optimizer: torch.optim.Optimizer, on_skip: Callable[[], None]) -> None:
        self.optimizer = optimizer
        self.on_skip = on_skip
        self.n_skipped = 0
        self._handle: Any = optimizer.register_step_pre_hook(self._pre_step)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # torch passes step()'s own arguments, the optimizer first: (opt, closure?).
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is not None:
            # A closure recomputes the gradients inside step(), after this hook:
            # the gradients here are stale, so they say nothing about this update.
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        if not grads or all_finite(grads):
            return
        for p in params:
            p.grad = None
        self.n_skipped += 1
        self.on_skip()

    def remove(self) -> None:
        """Detach the hook from the optimizer (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
