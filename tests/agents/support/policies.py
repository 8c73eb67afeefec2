"""A small real torch MLP standing in for `agents.policy.TuningPolicy` (same surface)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hpo_env.features import FeatureExtractor
from hpo_env.space import HyperparameterSpace
from tests.hpo_env.tiny_task import TinyRegressionTask


class StandInPolicy:
    """``act(obs) = tanh(MLP(obs))``; picklable, deterministic for a given seed."""

    def __init__(
        self, hparams: tuple[str, ...] = ("learning_rate",), seed: int = 0, hidden: int = 16
    ):
        self.space = HyperparameterSpace.from_names(hparams)
        self.metadata = {"name": "stand-in", "hparams": list(hparams)}
        torch.manual_seed(seed)
        d = FeatureExtractor.observation_size(self.space)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, len(self.space))
        )

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        return torch.tanh(self.net(x)).numpy()


class SamplerOf:
    """A task sampler that always returns one task."""

    def __init__(self, task):
        self.task = task

    def sample(self, rng):
        return self.task


@dataclasses.dataclass(frozen=True)
class TinyTaskWithDefaults(TinyRegressionTask):
    """The tiny regression task plus ``default_hparams()``, as real tasks have."""

    default_lr: float = 0.05

    def default_hparams(self) -> dict[str, float]:
        return {"learning_rate": self.default_lr}
