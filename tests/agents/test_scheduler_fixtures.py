"""Stand-in tuning policies for the deployment tests (no tests here).

`MlpStandInPolicy` has the surface `agents.scheduler.PolicyLike` asks for
(``space``, ``metadata``, ``feature_extractor``, ``act``) backed by a real,
freshly initialised torch MLP; `ReplayPolicy` returns recorded actions in order,
to drive a scheduler and an environment with the same action sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hpo_env.features import FeatureExtractor
from hpo_env.space import HyperparameterSpace


class MlpStandInPolicy:
    def __init__(
        self,
        hparams: Sequence[str] = ("learning_rate", "entropy_coef"),
        seed: int = 0,
        decisions_per_run: int = 10,
        gain: float = 1.0,
    ) -> None:
        self.space = HyperparameterSpace.from_names(hparams)
        self.metadata: dict[str, Any] = {
            "decisions_per_run": decisions_per_run,
            "updates_per_step": 5,
        }
        n_obs = FeatureExtractor.observation_size(self.space)
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_obs, 16), torch.nn.Tanh(), torch.nn.Linear(16, len(self.space))
        )
        with torch.no_grad():
            self.net[2].weight.mul_(gain)
        self.observations: list[np.ndarray] = []

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        self.observations.append(obs.copy())
        out = torch.tanh(self.net(torch.as_tensor(obs)))
        return out.numpy().astype(np.float32)


class ReplayPolicy:
    """Returns ``actions[i]`` at its i-th call and records every observation."""

    def __init__(
        self, actions: np.ndarray, hparams: Sequence[str] = ("learning_rate", "entropy_coef")
    ):
        self.space = HyperparameterSpace.from_names(hparams)
        self.metadata: dict[str, Any] = {}
        self.actions = np.asarray(actions, dtype=np.float32)
        self.observations: list[np.ndarray] = []

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        i = len(self.observations)
        self.observations.append(np.asarray(obs, dtype=np.float32).copy())
        return self.actions[min(i, len(self.actions) - 1)].reshape(1, -1)
