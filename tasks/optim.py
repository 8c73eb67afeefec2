"""Batched optimizers: one optimizer state per run, per-run [B] hyperparameters.

Each optimizer updates a ``[B, ...]`` parameter tensor in place (the engine
uses one flat ``[B, P]`` buffer) with the exact update rule of its PyTorch
counterpart, run by run:

- `BatchedSGD` = ``torch.optim.SGD(lr, momentum, weight_decay, dampening=0, nesterov=False)``;
- `BatchedAdam` = ``torch.optim.Adam(lr, betas=(momentum, 0.999), eps=1e-8, weight_decay)``
  (L2 added to the gradient) or, with ``decoupled_weight_decay=True``,
  ``torch.optim.AdamW`` (decay applied to the parameters);
- `BatchedRMSprop` = ``torch.optim.RMSprop(lr, alpha=0.99, eps=1e-8, weight_decay,
  momentum, centered=False)``.

Hyperparameters arrive as float64 [B] tensors: PyTorch computes its scalar
factors (``lr / (1 - beta1 ** step)`` and friends) in Python floats, so doing
them in float64 and casting once keeps the two bit-close.

Example:
    >>> opt = BatchedSGD(n_runs=2, shape=(3,))
    >>> p = torch.zeros(2, 3)
    >>> lr = torch.tensor([0.1, 0.2], dtype=torch.float64)
    >>> zero = torch.zeros(2, dtype=torch.float64)
    >>> opt.step(p, torch.ones(2, 3), lr, zero + 0.9, zero)
    >>> p[:, 0]
    tensor([-0.1000, -0.2000])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
"""Names accepted by `make_batched_optimizer`."""

ADAM_BETA2 = 0.999
"""Adam's second-moment decay (fixed; not a controlled hyperparameter)."""
ADAM_EPS = 1e-8
"""Adam's epsilon, added to ``sqrt(v_hat)`` exactly as ``torch.optim.Adam`` does."""
RMSPROP_ALPHA = 0.99
"""RMSprop's squared-gradient decay (``torch.optim.RMSprop``'s default; not controlled)."""
RMSPROP_EPS = 1e-8
"""RMSprop's epsilon, added to ``sqrt(square_avg)`` as ``torch.optim.RMSprop`` does."""


def _col(values: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, 1, ..., 1] in ``like``'s dtype, to broadcast over one run's parameters."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _mask(values: Tensor, like: Tensor) -> Tensor:
    """Boolean [B] -> [B, 1, ..., 1]."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _l2_decayed(grads: Tensor, params: Tensor, weight_decay: Tensor) -> Tensor:
    """``grads + weight_decay * params`` (coupled L2 decay), per run. torch skips the term
    where weight_decay == 0 (0 * inf would be NaN), so those runs keep ``grads``."""
    if not bool((weight_decay != 0).any()):
        return grads
    decayed = torch.addcmul(grads, params, _col(weight_decay, params))
    if bool((weight_decay != 0).all()):
        return decayed
    return torch.where(_mask(weight_decay != 0, params), decayed, grads)


class BatchedOptimizer(Protocol):
    """One optimizer per run, stepped together."""

    def step(
        self, params: Tensor, grads: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor
    ) -> None:
        """Update ``params`` [B, ...] in place from ``grads`` [B, ...]; hyperparameters are [B]."""
        ...

    def reset_slots(self, indices: Sequence[int]) -> None:
        """Forget the state of runs ``indices`` (as a freshly constructed optimizer would)."""
        ...


class BatchedSGD:
    """SGD with momentum and (L2) weight decay, like ``torch.optim.SGD`` run by run."""

    def __init__(
        self,
        n_runs: int,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        self.momentum_buffer = torch.zeros(n_runs, *shape, dtype=dtype, device=device)

    def step(
        self, params: Tensor, grads: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor
    ) -> None:
        d_p = _l2_decayed(grads, params, weight_decay)
        buf = self.momentum_buffer
        if bool((momentum != 0).all()):
            # A zero buffer times momentum plus d_p equals torch's "buffer = d_p" first step.
            buf.mul_(_col(momentum, buf)).add_(d_p)
            direction = buf
        else:
            # torch neither uses nor updates the buffer of a run whose momentum is 0.
            use = _mask(momentum != 0, buf)
            new_buf = buf * _col(momentum, buf) + d_p
            buf.copy_(torch.where(use, new_buf, buf))
            direction = torch.where(use, new_buf, d_p)
        params.addcmul_(direction, _col(-lr, params))

    def reset_slots(self, indices: Sequence[int]) -> None:
        self.momentum_buffer[list(indices)] = 0.0


class BatchedAdam:
    """Adam (``decoupled_weight_decay=False``) or AdamW, like ``torch.optim.Adam``/``AdamW``.

    ``momentum`` is beta1; beta2 and eps are fixed at PyTorch's defaults. Each run
    keeps its own step count, so bias correction restarts after `reset_slots`.
    """

    def __init__(
        self,
        n_runs: int,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
        *,
        decoupled_weight_decay: bool = False,
        device: torch.device | str | None = None,
    ):
        self.decoupled_weight_decay = decoupled_weight_decay
        self.exp_avg = torch.zeros(n_runs, *shape, dtype=dtype, device=device)
        self.exp_avg_sq = torch.zeros(n_runs, *shape, dtype=dtype, device=device)
        self.steps = torch.zeros(n_runs, dtype=torch.float64, device=device)

    def step(
        self, params: Tensor, grads: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor
    ) -> None:
        self.steps += 1
        lr64, beta1 = lr.double(), momentum.double()
        grad = grads
        if self.decoupled_weight_decay:
            if bool((weight_decay != 0).any()):
                params.mul_(_col(1.0 - lr64 * weight_decay.double(), params))
        else:
            grad = _l2_decayed(grads, params, weight_decay)
        self.exp_avg.lerp_(grad, _col(1.0 - beta1, grad))
        self.exp_avg_sq.mul_(ADAM_BETA2).addcmul_(grad, grad, value=1.0 - ADAM_BETA2)
        bias_correction1 = 1.0 - beta1**self.steps
        bias_correction2_sqrt = (1.0 - ADAM_BETA2**self.steps) ** 0.5
        step_size = lr64 / bias_correction1
        denom = (self.exp_avg_sq.sqrt() / _col(bias_correction2_sqrt, grad)).add_(ADAM_EPS)
        params.addcmul_(self.exp_avg / denom, _col(-step_size, params))

    def reset_slots(self, indices: Sequence[int]) -> None:
        idx = list(indices)
        self.exp_avg[idx] = 0.0
        self.exp_avg_sq[idx] = 0.0
        self.steps[idx] = 0.0


class BatchedRMSprop:
    """RMSprop (not centred) with optional momentum and L2 weight decay, like
    ``torch.optim.RMSprop`` run by run; ``momentum`` is RMSprop's momentum (0 by default
    in torch, where the momentum buffer is neither used nor updated)."""

    def __init__(
        self,
        n_runs: int,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        self.square_avg = torch.zeros(n_runs, *shape, dtype=dtype, device=device)
        self.momentum_buffer = torch.zeros(n_runs, *shape, dtype=dtype, device=device)

    def step(
        self, params: Tensor, grads: Tensor, lr: Tensor, momentum: Tensor, weight_decay: Tensor
    ) -> None:
        grad = _l2_decayed(grads, params, weight_decay)
        self.square_avg.mul_(RMSPROP_ALPHA).addcmul_(grad, grad, value=1.0 - RMSPROP_ALPHA)
        avg = self.square_avg.sqrt().add_(RMSPROP_EPS)
        direction = grad / avg
        if bool((momentum != 0).any()):
            use = _mask(momentum != 0, params)
            new_buf = self.momentum_buffer * _col(momentum, params) + direction
            self.momentum_buffer.copy_(torch.where(use, new_buf, self.momentum_buffer))
            direction = torch.where(use, new_buf, direction)
        params.addcmul_(direction, _col(-lr, params))

    def reset_slots(self, indices: Sequence[int]) -> None:
        idx = list(indices)
        self.square_avg[idx] = 0.0
        self.momentum_buffer[idx] = 0.0


def make_batched_optimizer(
    name: str,
    n_runs: int,
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> BatchedOptimizer:
    """``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"`` for ``n_runs`` parameter tensors
    of ``shape`` (state on ``device``, default CPU)."""
    if name == "sgd":
        return BatchedSGD(n_runs, shape, dtype, device)
    if name in ("adam", "adamw"):
        return BatchedAdam(
            n_runs, shape, dtype, decoupled_weight_decay=name == "adamw", device=device
        )
    if name == "rmsprop":
        return BatchedRMSprop(n_runs, shape, dtype, device)
    raise ValueError(f"unknown optimizer {name!r}, expected one of {list(OPTIMIZERS)}")


def make_torch_optimizer(
    name: str,
    params: object,
    *,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """The plain ``torch.optim`` optimizer whose update `make_batched_optimizer` reproduces."""
    if name == "sgd":
        return torch.optim.SGD(
            params,  # type: ignore[arg-type]
            lr=learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
        )
    if name in ("adam", "adamw"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(
            params,  # type: ignore[arg-type]
            lr=learning_rate,
            betas=(momentum, ADAM_BETA2),
            eps=ADAM_EPS,
            weight_decay=weight_decay,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,  # type: ignore[arg-type]
            lr=learning_rate,
            alpha=RMSPROP_ALPHA,
            eps=RMSPROP_EPS,
            momentum=momentum,
            weight_decay=weight_decay,
        )
    raise ValueError(f"unknown optimizer {name!r}, expected one of {list(OPTIMIZERS)}")
