"""A small, real batched task for testing `hpo_env` without `tasks/`:
B independent linear-regression runs trained with plain SGD in lockstep."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from hpo_env.stats import StepStats


class LinearRegressionRuns:
    def __init__(self, task: TinyRegressionTask, seeds: Sequence[int]) -> None:
        self.task = task
        n = len(seeds)
        d = task.dim
        self.x = torch.zeros(n, task.n_train, d)
        self.y = torch.zeros(n, task.n_train)
        self.xv = torch.zeros(n, task.n_val, d)
        self.yv = torch.zeros(n, task.n_val)
        self.w = torch.zeros(n, d)
        self.lr = torch.zeros(n)
        self.prev_grad = torch.zeros(n, d)
        self.has_prev = torch.zeros(n, dtype=torch.bool)
        self.gens: list[torch.Generator] = [torch.Generator() for _ in range(n)]
        self.reset_runs(list(range(n)), seeds)

    @property
    def n_runs(self) -> int:
        return self.w.shape[0]

    @property
    def hparam_names(self) -> tuple[str, ...]:
        return ("learning_rate",)

    def get_hyperparameters(self) -> dict[str, Tensor]:
        return {"learning_rate": self.lr.clone()}

    def set_hyperparameters(self, values: Mapping[str, Tensor]) -> None:
        self.lr = torch.as_tensor(values["learning_rate"], dtype=torch.float32).clone()

    def reset_runs(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        d = self.task.dim
        for i, seed in zip(indices, seeds):
            g = torch.Generator().manual_seed(int(seed))
            teacher = torch.randn(d, generator=g)
            self.x[i] = torch.randn(self.task.n_train, d, generator=g)
            self.y[i] = self.x[i] @ teacher + 0.1 * torch.randn(self.task.n_train, generator=g)
            self.xv[i] = torch.randn(self.task.n_val, d, generator=g)
            self.yv[i] = self.xv[i] @ teacher
            self.w[i] = 0.1 * torch.randn(d, generator=g)
            self.lr[i] = 0.05 * 10 ** (torch.rand(1, generator=g).item() - 0.5)
            self.gens[i] = g
            self.has_prev[i] = False

    def train(self, n_updates: int) -> StepStats:
        w_start = self.w.clone()
        losses = []
        grad = torch.zeros_like(self.w)
        for _ in range(n_updates):
            idx = torch.stack(
                [torch.randint(0, self.task.n_train, (8,), generator=g) for g in self.gens]
            )
            xb = torch.gather(self.x, 1, idx[..., None].expand(-1, -1, self.task.dim))
            yb = torch.gather(self.y, 1, idx)
            err = torch.einsum("bnd,bd->bn", xb, self.w) - yb
            losses.append((err**2).mean(1))
            grad = 2 * torch.einsum("bn,bnd->bd", err, xb) / xb.shape[1]
            self.w = self.w - self.lr[:, None] * grad
        loss = torch.stack(losses)
        cos = torch.nn.functional.cosine_similarity(grad, self.prev_grad, dim=1)
        cos = torch.where(self.has_prev, cos, 0.0)
        self.prev_grad, self.has_prev = grad, torch.ones_like(self.has_prev)
        return StepStats(
            train_loss=loss.mean(0),
            train_loss_std=loss.std(0, unbiased=False),
            train_loss_first=loss[0],
            grad_norm=grad.norm(dim=1),
            grad_cosine=cos,
            update_ratio=(self.w - w_start).norm(dim=1) / (w_start.norm(dim=1) + 1e-12),
            n_updates=n_updates,
            hparams=self.get_hyperparameters(),
        )

    def evaluate(self, fraction: float = 1.0) -> Tensor:
        n = max(1, math.ceil(fraction * self.task.n_val))
        err = torch.einsum("bnd,bd->bn", self.xv[:, :n], self.w) - self.yv[:, :n]
        return (err**2).mean(1)


@dataclasses.dataclass(frozen=True)
class TinyRegressionTask:
    dim: int = 4
    n_train: int = 64
    n_val: int = 32
    control_steps: int = 6
    updates_per_step: int = 3
    name: str = "tiny_regression"
    family: str = "tiny"

    def build(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> LinearRegressionRuns:
        if torch.device(device).type != "cpu":
            raise ValueError(f"the tiny task runs on the CPU only, got {device=}")
        return LinearRegressionRuns(self, seeds)


@dataclasses.dataclass(frozen=True)
class TinySampler:
    dims: tuple[int, ...] = (3, 4, 5)

    def sample(self, rng: np.random.Generator) -> TinyRegressionTask:
        return TinyRegressionTask(dim=int(rng.choice(self.dims)))

    def task_by_name(self, name: str) -> TinyRegressionTask:
        if name != "tiny_regression":
            raise ValueError(f"unknown task {name!r}")
        return TinyRegressionTask()
