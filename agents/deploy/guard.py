"""`NonFiniteGuard`: an optimizer update with a NaN/inf gradient never happens.

`TuningScheduler(..., nonfinite="skip")` installs it; the default
(``"rollback"``) does without it, returning to the last decision's parameters
instead, at no cost per update.

A scheduler is stepped *after* ``optimizer.step()``, too late to stop a
non-finite loss's gradient from reaching the weights. This guard is an
optimizer step pre-hook (``Optimizer.register_step_pre_hook``): before every
update it checks that every gradient is finite and, when one is not, drops
the gradients (``p.grad = None``: every ``torch.optim`` optimizer skips a
parameter without a gradient, so weights, momenta and Adam's step counts stay
as they were) and tells its owner, who backs the learning rate off.

What counts as non-finite: a NaN or inf element. A finite gradient, however
large, is applied (the policy, not the guard, handles large gradients).

Cost: ``torch.amp.GradScaler``'s own inf check (one fused pass over all the
gradients, values left as they are) and one host sync per update, as
GradScaler pays: ~7 us for the 26k-parameter MLP of `agents.perf.overhead`
on one CPU thread, measured alone; inside the training loop, where the step has
just evicted the caches, ~12-20 us, 2-3% of its ~700 us step (the 2-norm it
replaced: ~22 us alone).

Why a sync every update and not an on-device conditional update: skipping has
to leave the weights *and* the optimizer's state (momenta, Adam's step count)
exactly as they were; zeroing a non-finite gradient on the device would still
move them, and undoing an update needs a copy of all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def all_finite(grads: list[Tensor], flags: dict[torch.device, Tensor] | None = None) -> bool:
    """Whether every element of every tensor is finite (one sync per device).

    The check is the kernel ``torch.amp.GradScaler`` checks gradients with
    (``torch._amp_foreach_non_finite_check_and_unscale_``, here with scale 1,
    which leaves every value's bits as they are): one fused read of all the
    gradients, ~7 us for a 26k-parameter MLP on one CPU thread, a third of a fused
    2-norm. When the kernel refuses the list (several devices, sparse or complex
    gradients, gradients that require grad, a torch without the kernel for the
    device), one fused 2-norm per device and dtype decides instead; there a
    gradient whose norm overflows its dtype counts as non-finite too.

    Args:
        grads: The gradients (at least one).
        flags: Reusable one-element float32 buffers by device (a guard's own);
            fresh ones when None.
    """
    device = grads[0].device
    if device not in _NO_AMP_KERNEL:
        flag = None if flags is None else flags.get(device)
        if flag is None:
            flag = torch.zeros(1, device=device)
            if flags is not None:
                flags[device] = flag  # kept at zero between calls: reset only when set
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, _one(device))
            if flag.item() == 0.0:
                return True
            flag.zero_()
            return False
        except (NotImplementedError, RuntimeError):
            # A list the kernel refuses (sparse gradients, several devices), or no
            # kernel for the device at all (an older torch on CPU): remember only the latter.
            if not _has_amp_kernel(device):
                _NO_AMP_KERNEL.add(device)
        flag.zero_()
    return _all_finite_by_norm(grads)


def _all_finite_by_norm(grads: list[Tensor]) -> bool:
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for g in grads:
        dense = g.coalesce().values() if g.is_sparse else g
        buckets.setdefault((dense.device, dense.dtype), []).append(dense.detach())
    for tensors in buckets.values():
        total = torch.stack(torch._foreach_norm(tensors)).sum()
        if not math.isfinite(total.item()):
            return False
    return True


_NO_AMP_KERNEL: set[torch.device] = set()
_ONES: dict[torch.device, Tensor] = {}


def _has_amp_kernel(device: torch.device) -> bool:
    try:
        probe = torch.zeros(1, device=device)
        torch._amp_foreach_non_finite_check_and_unscale_([probe], probe.clone(), _one(device))
    except (NotImplementedError, RuntimeError):
        return False
    return True


def _one(device: torch.device) -> Tensor:
    """The unit scale on ``device`` (never written)."""
    one = _ONES.get(device)
    if one is None:
        one = _ONES[device] = torch.ones(1, device=device)
    return one


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
        self._flags: dict[torch.device, Tensor] = {}
        self._handle: Any = optimizer.register_step_pre_hook(self._pre_step)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # torch passes step()'s own arguments, the optimizer first: (opt, closure?).
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is not None:
            # A closure recomputes the gradients inside step(), after this hook:
            # the gradients here are stale, so they say nothing about this update.
            return
        groups = optimizer.param_groups
        grads = [p.grad for group in groups for p in group["params"] if p.grad is not None]
        if not grads or all_finite(grads, self._flags):
            return
        for group in groups:
            for p in group["params"]:
                p.grad = None
        self.n_skipped += 1
        self.on_skip()

    def remove(self) -> None:
        """Detach the hook from the optimizer (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
