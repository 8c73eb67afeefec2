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
import pytest
import torch

from hpo_env.features import FeatureExtractor
from hpo_env.space import HyperparameterSpace


def small_model(seed: int = 0) -> torch.nn.Module:
    """A 4-8-1 tanh MLP, seeded."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def regression_loss(model: torch.nn.Module, i: int) -> torch.Tensor:
    """``small_model``'s squared error on minibatch ``i`` (16 examples, drawn from ``i``)."""
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(i))
    return (model(x) - x.sum(1, keepdim=True)).square().mean()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread spin-waiting
    made them ~20x slower (measured), so these tests run with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
        self,
        actions: np.ndarray,
        hparams: Sequence[str] | HyperparameterSpace = ("learning_rate", "entropy_coef"),
    ):
        self.space = (
            hparams
            if isinstance(hparams, HyperparameterSpace)
            else HyperparameterSpace.from_names(hparams)
        )
        self.metadata: dict[str, Any] = {}
        self.actions = np.asarray(actions, dtype=np.float32)
        self.observations: list[np.ndarray] = []

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        i = len(self.observations)
        self.observations.append(np.asarray(obs, dtype=np.float32).copy())
        return self.actions[min(i, len(self.actions) - 1)].reshape(1, -1)


def random_tuning_policy(
    hparams: Sequence[str] = ("learning_rate", "entropy_coef"),
    seed: int = 0,
    net_arch: Sequence[int] = (16,),
    decisions_per_run: int | None = 10,
):
    """A real `agents.policy.TuningPolicy` with freshly initialised actor weights."""
    from agents.policy.bundle import FORMAT_VERSION, BundleContents
    from agents.policy.tuning_policy import TuningPolicy
    from hpo_env.features import FEATURE_SPEC_VERSION

    space = HyperparameterSpace.from_names(hparams)
    names = FeatureExtractor.feature_names(space)
    g = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    fan_in = len(names)
    for i, width in enumerate(net_arch):
        weights[f"layers.{i}.weight"] = torch.randn(width, fan_in, generator=g) / fan_in**0.5
        weights[f"layers.{i}.bias"] = torch.zeros(width)
        fan_in = width
    weights["action_mean.weight"] = torch.randn(len(space), fan_in, generator=g) / fan_in**0.5
    weights["action_mean.bias"] = torch.zeros(len(space))
    weights["log_std"] = torch.zeros(len(space))
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": names,
        "hparams": space.to_dicts(),
        "net_arch": list(net_arch),
        "activation": "tanh",
    }
    if decisions_per_run is not None:
        metadata["control"] = {"decisions_per_run": decisions_per_run}
    normalization = {
        "mean": [0.0] * len(names),
        "var": [1.0] * len(names),
        "clip_obs": 10.0,
        "epsilon": 1e-8,
    }
    return TuningPolicy(
        BundleContents(weights=weights, normalization=normalization, metadata=metadata)
    )
