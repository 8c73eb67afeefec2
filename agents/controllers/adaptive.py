"""Adaptive baselines: ReduceLROnPlateau and hypergradient descent, as batched controllers and for plain PyTorch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from agents.controllers.protocol import RolloutContext
from agents.controllers.schedules import LR, _ControllerBase
from hpo_env.stats import StepStats


class PlateauRule:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode min, relative threshold) on [B] tensors.

    ``update(metric, lr)`` returns the new learning rates; entries whose
    metric is NaN (no validation this interval) are left untouched.
    """

    def __init__(
        self,
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-3,
        cooldown: int = 0,
        min_lr: float = 1e-6,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor=}")
        if patience < 0 or cooldown < 0:
            raise ValueError(f"patience and cooldown must be >= 0, got {patience=}, {cooldown=}")
        if not 0.0 <= threshold < 1.0 or min_lr < 0:
            raise ValueError(
                f"expected 0 <= threshold < 1 and min_lr >= 0, got {threshold=}, {min_lr=}"
            )
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.best: Tensor | None = None
        self.num_bad: Tensor | None = None
        self.cooldown_counter: Tensor | None = None

    def reset(self, n_runs: int) -> None:
        self.best = torch.full((n_runs,), math.inf)
        self.num_bad = torch.zeros(n_runs, dtype=torch.long)
        self.cooldown_counter = torch.zeros(n_runs, dtype=torch.long)

    def update(self, metric: Tensor, lr: Tensor) -> Tensor:
        if self.best is None or self.num_bad is None or self.cooldown_counter is None:
            self.reset(metric.shape[0])
        assert (
            self.best is not None and self.num_bad is not None and self.cooldown_counter is not None
        )
        seen = torch.isfinite(metric)
        better = seen & (metric < self.best * (1.0 - self.threshold))
        self.best = torch.where(better, metric, self.best)
        num_bad = torch.where(better, 0, self.num_bad + 1)
        in_cooldown = self.cooldown_counter > 0
        cooldown_counter = torch.where(
            in_cooldown, self.cooldown_counter - 1, self.cooldown_counter
        )
        num_bad = torch.where(in_cooldown, 0, num_bad)
        reduce = num_bad > self.patience
        new_lr = torch.where(reduce, (lr * self.factor).clamp_min(self.min_lr), lr)
        cooldown_counter = torch.where(reduce, self.cooldown, cooldown_counter)
        num_bad = torch.where(reduce, 0, num_bad)
        self.num_bad = torch.where(seen, num_bad, self.num_bad)
        self.cooldown_counter = torch.where(seen, cooldown_counter, self.cooldown_counter)
        return torch.where(seen, new_lr, lr)

    def torch_kwargs(self) -> dict[str, Any]:
        return {
            "mode": "min",
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": "rel",
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
        }

    def __repr__(self) -> str:
        return (
            f"PlateauRule(factor={self.factor}, patience={self.patience}, threshold={self.threshold}, "
            f"cooldown={self.cooldown}, min_lr={self.min_lr})"
        )


def torch_plateau(optimizer: torch.optim.Optimizer, rule: PlateauRule | None = None) -> Any:
    """``ReduceLROnPlateau`` for a plain PyTorch loop, with `PlateauController`'s settings."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, **(rule or PlateauRule()).torch_kwargs()
    )


class PlateauController(_ControllerBase):
    """ReduceLROnPlateau on the validation objective, counted in control intervals.

    Only validations the controller sees count (every ``val_every`` decisions);
    with ``val_every=0`` it never reduces. Defaults are scaled to episodes of a
    few dozen decisions (torch's ``patience=10`` would never fire).

    Args:
        factor, patience, threshold, cooldown, min_lr: As in torch's ReduceLROnPlateau.
        name: Label in reports.
    """

    def __init__(
        self,
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-3,
        cooldown: int = 0,
        min_lr: float = 1e-6,
        name: str = "plateau",
    ) -> None:
        super().__init__()
        self.rule = PlateauRule(factor, patience, threshold, cooldown, min_lr)
        self.name = name
        self._lr: Tensor | None = None

    def reset(self, context: RolloutContext) -> None:
        super().reset(context)
        self.rule.reset(context.n_runs)
        self._lr = self._base_lr()

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        assert self._lr is not None  # set by reset
        if stats is not None:
            self._lr = self.rule.update(stats.val_loss, self._lr)  # type: ignore[arg-type]
        return {LR: self._lr.clone()}

    def __repr__(self) -> str:
        return f"PlateauController({self.rule!r}, name={self.name!r})"


class HypergradientController(_ControllerBase):
    """Hypergradient descent (Baydin et al. 2018) at control-interval granularity.

    The real rule, ``lr ← lr + β · g_t · u_{t-1}`` per update, needs every
    gradient. A batched run only reports interval statistics, among them
    ``grad_cosine``: the cosine between the last gradient of this interval and
    of the previous one. This controller applies the *multiplicative* variant
    with that cosine standing in for the per-update one, summed over the K
    updates of the interval: ``lr ← lr · exp(clip(β · K · cos, ±ln 10^max_log10_step))``.
    Aligned successive gradients (too small a step) raise the learning rate,
    opposed ones (oscillation) lower it; the cap equals the policy's largest
    change per decision. It is an approximation: gradients K updates apart are
    less correlated than consecutive ones, so it reacts more weakly than
    per-update HD.

    Args:
        beta: Per-update multiplicative hyper-learning-rate.
        max_log10_step: Largest change per decision, in decades.
        min_lr, max_lr: Bounds of the learning rate.
        name: Label in reports.
    """

    def __init__(
        self,
        beta: float = 0.02,
        max_log10_step: float = 0.5,
        min_lr: float = 1e-6,
        max_lr: float = 10.0,
        name: str = "hypergradient",
    ) -> None:
        super().__init__()
        if not (math.isfinite(beta) and beta > 0) or not max_log10_step > 0:
            raise ValueError(f"beta and max_log10_step must be > 0, got {beta=}, {max_log10_step=}")
        if not 0 <= min_lr < max_lr:
            raise ValueError(f"expected 0 <= min_lr < max_lr, got {min_lr=}, {max_lr=}")
        self.beta, self.max_log10_step = float(beta), float(max_log10_step)
        self.min_lr, self.max_lr = float(min_lr), float(max_lr)
        self.name = name
        self._lr: Tensor | None = None

    def reset(self, context: RolloutContext) -> None:
        super().reset(context)
        self._lr = self._base_lr()

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        ctx = self._ctx()
        assert self._lr is not None  # set by reset
        if stats is not None:
            cos = torch.nan_to_num(stats.grad_cosine, nan=0.0).clamp(-1.0, 1.0)
            cap = self.max_log10_step * math.log(10.0)
            exponent = (self.beta * ctx.updates_per_step * cos).clamp(-cap, cap)
            self._lr = (self._lr * torch.exp(exponent)).clamp(self.min_lr, self.max_lr)
        return {LR: self._lr.clone()}

    def __repr__(self) -> str:
        return (
            f"HypergradientController(beta={self.beta}, max_log10_step={self.max_log10_step}, "
            f"min_lr={self.min_lr}, max_lr={self.max_lr})"
        )


class HypergradientLR:
    """Per-update hypergradient descent for any ``torch.optim`` optimizer (SGD-HD / Adam-HD).

    Call ``step()`` after ``loss.backward()`` and *before* ``optimizer.step()``.
    With ``u_{t-1} = (θ_{t-1} − θ_t) / lr_{t-1}``, the direction of the
    previous update (the gradient for plain SGD, Adam's normalised moment for
    Adam), the rule is Baydin et al.'s ``lr ← lr + β · g_t · u_{t-1}``
    (``multiplicative=True``: ``lr ← lr · (1 + β · cos(g_t, u_{t-1}))``, scale-free).

    Args:
        optimizer: The optimizer whose ``param_groups[i]["lr"]`` is adapted.
        beta: Hyper-learning-rate (the paper: 1e-3 for SGD-HD, 1e-7 for Adam-HD; ~0.02 multiplicative).
        multiplicative: Use the normalised, scale-free variant.
        min_lr: Lower bound of the learning rate.

    Example:
        >>> hd = HypergradientLR(optimizer, beta=1e-3)  # doctest: +SKIP
        >>> loss.backward(); hd.step(); optimizer.step()  # doctest: +SKIP
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        beta: float = 1e-3,
        multiplicative: bool = False,
        min_lr: float = 0.0,
    ) -> None:
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {beta=}")
        self.optimizer = optimizer
        self.beta, self.multiplicative, self.min_lr = (
            float(beta),
            bool(multiplicative),
            float(min_lr),
        )
        self._snapshots: list[list[Tensor] | None] = [None] * len(optimizer.param_groups)
        self._lr_used: list[float] = [0.0] * len(optimizer.param_groups)

    @torch.no_grad()
    def step(self) -> list[float]:
        """Adapt every group's learning rate; returns the new values."""
        for i, group in enumerate(self.optimizer.param_groups):
            params = list(group["params"])
            snapshot = self._snapshots[i]
            if snapshot is not None and self._lr_used[i] > 0:
                dot = torch.zeros((), dtype=torch.float64)
                g_sq = torch.zeros((), dtype=torch.float64)
                u_sq = torch.zeros((), dtype=torch.float64)
                for p, before in zip(params, snapshot):
                    if p.grad is None:
                        continue
                    u = (before - p).double() / self._lr_used[i]
                    g = p.grad.double()
                    dot += (g * u).sum()
                    g_sq += g.square().sum()
                    u_sq += u.square().sum()
                if self.multiplicative:
                    cos = dot / (g_sq.sqrt() * u_sq.sqrt()).clamp_min(1e-30)
                    new_lr = group["lr"] * (1.0 + self.beta * float(cos))
                else:
                    new_lr = group["lr"] + self.beta * float(dot)
                if math.isfinite(new_lr):
                    group["lr"] = max(new_lr, self.min_lr)
            self._snapshots[i] = [p.detach().clone() for p in params]
            self._lr_used[i] = float(group["lr"])
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def __repr__(self) -> str:
        return f"HypergradientLR(beta={self.beta}, multiplicative={self.multiplicative}, min_lr={self.min_lr})"
