"""`StatsTracker`: the `hpo_env.stats.StepStats` of one user training run.

The deployed controller must see the observations the environment produced
during meta-training, so this module computes every statistic exactly as
`hpo_env.stats` defines it, from nothing but the user's parameters, their
``.grad`` after each ``optimizer.step()`` and the reported losses:

- per update, only the float loss is appended (the per-step cost is a list
  append: the vector work happens once per control interval);
- at the interval's end, ``.grad`` still holds the gradient of the update just
  taken (computed at θ before it), which gives ``grad_norm`` and, against a flat
  copy of the previous interval's last gradient, ``grad_cosine``;
- ``update_ratio`` compares the parameters with a flat snapshot taken at the
  interval's start (the previous interval's end).

Parameters with ``requires_grad=False`` are skipped; a trainable parameter
whose ``.grad`` is ``None`` (unused in this step's loss) counts as a zero
gradient, so the flat vectors keep one layout across intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hpo_env.stats import StepStats


def _trainable(params: Iterable[Any]) -> list[Tensor]:
    out: list[Tensor] = []
    seen: set[int] = set()
    for p in params:
        if isinstance(p, dict):  # an optimizer param group
            out.extend(q for q in _trainable(p["params"]) if id(q) not in seen)
            seen.update(id(q) for q in out)
            continue
        if not isinstance(p, Tensor):
            raise TypeError(
                f"expected parameters (tensors) or param-group dicts, got {type(p).__name__}"
            )
        if p.requires_grad and id(p) not in seen:
            out.append(p)
            seen.add(id(p))
    return out


def _flat_f32(t: Tensor, device: torch.device) -> Tensor:
    """``t`` as a flat float32 view on ``device`` (a copy only where it must convert);
    called under ``no_grad``, so no autograd history either."""
    flat = t.reshape(-1)
    if flat.dtype == torch.float32 and flat.device == device:
        return flat
    return flat.to(device, torch.float32)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation; non-finite inputs give non-finite results."""
    with np.errstate(all="ignore"):
        array = np.asarray(values, dtype=np.float64)
        mean = float(array.mean())
        return mean, float(np.sqrt(np.mean((array - mean) ** 2)))


class StatsTracker:
    """Accumulates one control interval of a run and returns its `StepStats` (B=1).

    Args:
        params: The trained parameters: an iterable of tensors, of optimizer param
            groups, or a `torch.optim.Optimizer` (its ``param_groups`` are used).

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> tracker = StatsTracker(opt)
        >>> for _ in range(4):
        ...     loss = model(torch.ones(2, 3)).square().mean()
        ...     opt.zero_grad(); loss.backward(); opt.step()
        ...     tracker.record(loss.item())
        >>> stats = tracker.end_interval({"learning_rate": 0.1}, progress=0.5)
        >>> stats.n_updates
        4
    """

    def __init__(self, params: Iterable[Any] | torch.optim.Optimizer) -> None:
        groups = params.param_groups if isinstance(params, torch.optim.Optimizer) else params
        self.params = _trainable(groups)
        if not self.params:
            raise ValueError(
                "StatsTracker found no trainable parameters (requires_grad=True); "
                "pass the optimizer or the model's parameters()"
            )
        self.losses: list[float] = []
        self.theta_start = self._flat_params()
        self.prev_grad: Tensor | None = None

    # -- flat views -----------------------------------------------------------

    @torch.no_grad()
    def _flat_params(self) -> Tensor:
        device = self.params[0].device
        return torch.cat([_flat_f32(p, device) for p in self.params])

    @torch.no_grad()
    def _flat_grad(self) -> Tensor:
        device = self.params[0].device
        parts = [
            torch.zeros(p.numel(), device=device) if p.grad is None else _flat_f32(p.grad, device)
            for p in self.params
        ]
        return torch.cat(parts)

    # -- per update -----------------------------------------------------------

    def record(self, loss: float) -> None:
        """Append one update's minibatch loss (computed before that update)."""
        self.losses.append(loss)

    @property
    def n_recorded(self) -> int:
        """Updates recorded in the current interval."""
        return len(self.losses)

    # -- per interval ---------------------------------------------------------

    @torch.no_grad()
    def end_interval(
        self,
        hparams: Mapping[str, float | Tensor],
        progress: float,
        val_loss: float | None = None,
    ) -> StepStats:
        """The interval's statistics; starts the next interval.

        Args:
            hparams: Hyperparameter values in effect during the interval.
            progress: Fraction of the run's update budget done after the interval.
            val_loss: Validation objective measured after the interval, if any.

        Raises:
            RuntimeError: No update was recorded since the last interval ended.
        """
        k = len(self.losses)
        if k == 0:
            raise RuntimeError(
                "StatsTracker.end_interval called with no recorded update; call record(loss) first"
            )
        # Few tensor ops (this runs inside the user's loop): the vector work is one
        # concatenation per vector, one fused norm and one dot; the rest is on floats.
        grad = self._flat_grad()
        theta_end = self._flat_params()
        vectors = [grad, theta_end - self.theta_start, self.theta_start]
        if self.prev_grad is not None:
            vectors.append(self.prev_grad)
        scalars = list(torch._foreach_norm(vectors))
        if self.prev_grad is not None:
            scalars.append(grad @ self.prev_grad)
        values = torch.stack(scalars).tolist()
        grad_norm, update_norm, start_norm = values[:3]
        cosine = 0.0
        if self.prev_grad is not None:
            cosine = values[4] / max(grad_norm * values[3], 1e-12)
        self.prev_grad = grad
        self.theta_start = theta_end
        mean, std = _mean_std(self.losses)
        first = self.losses[0]
        self.losses = []
        val = float("nan") if val_loss is None else float(val_loss)
        rows = torch.tensor(
            [
                mean,
                std,
                first,
                grad_norm,
                cosine,
                update_norm / (start_norm + 1e-12),
                val if math.isfinite(val) else float("nan"),
                float(progress),
            ],
            dtype=torch.float32,
        ).reshape(8, 1)
        row = rows.unbind(0)  # eight [1] views in one op (indexing is one op each)
        return StepStats(
            train_loss=row[0],
            train_loss_std=row[1],
            train_loss_first=row[2],
            grad_norm=row[3],
            grad_cosine=row[4],
            update_ratio=row[5],
            n_updates=k,
            hparams={
                name: torch.as_tensor(v, dtype=torch.float32).reshape(1)
                for name, v in hparams.items()
            },
            val_loss=row[6],
            progress=row[7],
        )

    # -- checkpointing ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the current interval after a restart."""
        return {
            "losses": list(self.losses),
            "theta_start": self.theta_start.detach().cpu().clone(),
            "prev_grad": None if self.prev_grad is None else self.prev_grad.detach().cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected = self.theta_start.numel()
        theta = torch.as_tensor(state["theta_start"], dtype=torch.float32)
        if theta.numel() != expected:
            raise ValueError(
                f"StatsTracker state is for {theta.numel()} trainable parameters, this run has "
                f"{expected}: load the state into a run with the same model"
            )
        device = self.params[0].device
        self.losses = [float(x) for x in state["losses"]]
        self.theta_start = theta.to(device)
        prev = state.get("prev_grad")
        self.prev_grad = (
            None if prev is None else torch.as_tensor(prev, dtype=torch.float32).to(device)
        )
