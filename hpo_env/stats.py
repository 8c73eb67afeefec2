"""Per-control-step statistics of B runs, as [B] tensors.

The definitions below are the contract between the batched engine
(`tasks/`), the environment and the deployed `StatsTracker` (`agents/`):
each must compute every field exactly this way, so that the observations a
deployed controller sees equal the ones seen during meta-training.

For one control interval of K inner updates:

- ``train_loss``: mean of the K minibatch losses, each computed before its update.
- ``train_loss_std``: population standard deviation of those K losses (0 if K == 1).
- ``train_loss_first``: the first of those K losses (optional; the feature extractor
  uses a run's very first one as its loss scale, falling back to ``train_loss``).
- ``grad_norm``: global L2 norm of the loss gradient at the interval's last update
  (the gradient of the objective only: no weight decay term).
- ``grad_cosine``: cosine between that gradient and the previous interval's last
  gradient; 0 for a run's first interval.
- ``update_ratio``: ``||θ_end − θ_start|| / (||θ_start|| + 1e-12)`` over the interval.
- ``n_updates``: K.
- ``val_loss``: validation objective measured after the interval, NaN when not measured.
- ``hparams``: hyperparameter values in effect during the interval.
- ``progress``: fraction of the run's total update budget done after the interval.
- ``episode_return``: for RL base runs, mean episodic return normalised to [0, 1]
  by the task's return range; NaN for supervised runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

RL_LOSS_OFFSET = 0.05
"""The "loss" of an RL run is ``1 + RL_LOSS_OFFSET - normalised return``: the offset
keeps it > 0 when the policy is perfect, so log-ratios stay finite. The control
family's training runs and the deployed SB3 callback both use this one value."""

_TENSOR_FIELDS = (
    "train_loss",
    "train_loss_std",
    "train_loss_first",
    "grad_norm",
    "grad_cosine",
    "update_ratio",
    "val_loss",
    "progress",
    "episode_return",
)


def _nan(n: int) -> Tensor:
    return torch.full((n,), float("nan"))


@dataclasses.dataclass
class StepStats:
    """Statistics of one control interval for B runs; every tensor is float32 [B]."""

    train_loss: Tensor
    train_loss_std: Tensor
    grad_norm: Tensor
    grad_cosine: Tensor
    update_ratio: Tensor
    n_updates: int
    hparams: Mapping[str, Tensor] = dataclasses.field(default_factory=dict)
    train_loss_first: Tensor | None = None
    val_loss: Tensor | None = None
    progress: Tensor | None = None
    episode_return: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.train_loss.shape[0]
        if self.train_loss_first is None:
            self.train_loss_first = self.train_loss
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is None:
                value = _nan(n)
            if not (  # already a float32 [n] tensor without autograd (the usual case): keep it
                isinstance(value, Tensor)
                and value.dtype == torch.float32
                and value.dim() == 1
                and not value.requires_grad
            ):
                value = torch.as_tensor(value, dtype=torch.float32).detach().reshape(-1)
            if value.shape[0] != n:
                raise ValueError(
                    f"StepStats.{name} must have shape [{n}] like train_loss, got {tuple(value.shape)}"
                )
            setattr(self, name, value)
        if self.n_updates < 1:
            raise ValueError(f"StepStats.n_updates must be >= 1, got {self.n_updates=}")
        self.hparams = {
            k: torch.as_tensor(v, dtype=torch.float32).detach().reshape(-1).expand(n).clone()
            for k, v in self.hparams.items()
        }

    @classmethod
    def from_run(cls, run: RunInterval) -> StepStats:
        """One run's `RunInterval` as B=1 statistics (each float rounded to float32)."""
        fields = torch.tensor(
            [getattr(run, name) for name in _RUN_FLOAT_FIELDS], dtype=torch.float32
        ).reshape(len(_RUN_FLOAT_FIELDS), 1)
        return cls(
            n_updates=run.n_updates,
            hparams={k: torch.tensor([float(v)]) for k, v in run.hparams.items()},
            **dict(zip(_RUN_FLOAT_FIELDS, fields.unbind(0))),
        )

    def run(self, index: int = 0) -> RunInterval:
        """Run ``index``'s statistics as floats (the float32 values, exactly)."""
        values = torch.stack([getattr(self, name)[index] for name in _RUN_FLOAT_FIELDS]).tolist()
        return RunInterval(
            n_updates=self.n_updates,
            hparams={k: float(v[index]) for k, v in self.hparams.items()},
            **dict(zip(_RUN_FLOAT_FIELDS, values)),
        )

    @property
    def n_runs(self) -> int:
        return int(self.train_loss.shape[0])

    def replace(self, **changes: Any) -> StepStats:
        return dataclasses.replace(self, **changes)

    def slice(self, runs: slice) -> StepStats:
        """The statistics of the runs in ``runs`` (a slice of the run axis)."""
        fields = {name: getattr(self, name)[runs] for name in _TENSOR_FIELDS}
        hparams = {k: v[runs] for k, v in self.hparams.items()}
        return StepStats(n_updates=self.n_updates, hparams=hparams, **fields)

    @staticmethod
    def cat(items: list[StepStats]) -> StepStats:
        """Stack B=1 (or any B) statistics of intervals with the same K along the run axis."""
        if not items:
            raise ValueError("StepStats.cat needs at least one StepStats, got an empty list")
        fields = {name: torch.cat([getattr(s, name) for s in items]) for name in _TENSOR_FIELDS}
        names = items[0].hparams.keys()
        hparams = {k: torch.cat([s.hparams[k] for s in items]) for k in names}
        return StepStats(n_updates=items[0].n_updates, hparams=hparams, **fields)


class RunInterval(NamedTuple):
    """One run's `StepStats` as Python floats: what the deployed scheduler hands
    `hpo_env.features.FeatureExtractor.observe_run`, with no tensor built on the way
    (a decision's one-element tensor ops would cost more than its arithmetic). The
    fields mean what `StepStats`'s do; the feature extractor rounds them to float32."""

    train_loss: float
    train_loss_std: float
    train_loss_first: float
    grad_norm: float
    grad_cosine: float
    update_ratio: float
    n_updates: int
    hparams: Mapping[str, float]
    val_loss: float = math.nan
    progress: float = math.nan


_RUN_FLOAT_FIELDS = tuple(name for name in _TENSOR_FIELDS if name != "episode_return")
"""`RunInterval`'s float fields: `StepStats`'s tensor fields but ``episode_return``
(the features never read it)."""
