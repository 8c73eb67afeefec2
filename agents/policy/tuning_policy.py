"""`TuningPolicy`: a loaded policy bundle, run in plain torch (no stable-baselines3).

Example:
    >>> from agents import TuningPolicy
    >>> policy = TuningPolicy.load("default")            # the shipped bundle
    >>> fx = policy.feature_extractor(n_runs=1)
    >>> obs = fx.reset({"learning_rate": torch.tensor([0.1])}).numpy()
    >>> policy.act(obs).shape
    (1, 2)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.policy.bundle import (
    METADATA_FILE,
    BundleContents,
    BundleNotFoundError,
    read_bundle,
    write_bundle,
)
from hpo_env import FeatureExtractor, HyperparameterSpace
from hpo_env.errors import unknown_name_error

BUNDLES_PACKAGE_DIR = "bundles"


def shipped_bundle_names() -> list[str]:
    """Names of the bundles shipped under ``agents/policy/bundles/``."""
    root = resources.files("agents.policy") / BUNDLES_PACKAGE_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / METADATA_FILE).is_file())


def resolve_bundle_path(path_or_name: str | os.PathLike[str]) -> Path:
    """A directory path, or the name of a shipped bundle (``"default"``)."""
    path = Path(path_or_name)
    name = str(path_or_name)
    names = shipped_bundle_names()
    # A bare shipped name wins over a same-named directory in the working directory.
    is_shipped_name = (
        not isinstance(path_or_name, os.PathLike) and os.sep not in name and name in names
    )
    if not is_shipped_name and (
        isinstance(path_or_name, os.PathLike) or os.sep in name or path.exists()
    ):
        return path
    if name in names:
        resource = resources.files("agents.policy") / BUNDLES_PACKAGE_DIR / name
        # Editable and regular installs keep package data on disk.
        return Path(str(resource))
    error = unknown_name_error("shipped policy bundle (and no such directory)", name, names)
    raise BundleNotFoundError(str(error))


class TuningPolicy:
    """A meta-trained hyperparameter controller: observation normalisation + actor MLP.

    Observations come from `feature_extractor` (the same code the environment
    used in meta-training); actions in [-1, 1]^k go to ``space.apply``.
    """

    def __init__(self, contents: BundleContents, source: Path | None = None) -> None:
        self._contents = contents
        self.source = source
        self.space: HyperparameterSpace = contents.space
        self.metadata: Mapping[str, Any] = contents.metadata
        norm = contents.normalization
        self._mean = np.asarray(norm["mean"], dtype=np.float64)
        self._var = np.asarray(norm["var"], dtype=np.float64)
        self._clip_obs = float(norm["clip_obs"])
        self._epsilon = float(norm["epsilon"])
        self._norm_obs = bool(norm.get("norm_obs", True))
        self._std = np.sqrt(self._var + self._epsilon)  # VecNormalize's divisor, once
        self._observation_size = len(self.metadata["feature_names"])
        weights = contents.weights
        n_layers = len(self.metadata["net_arch"])
        self._layers = [
            (weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"]) for i in range(n_layers)
        ]
        self._head = (weights["action_mean.weight"], weights["action_mean.bias"])
        self._log_std = weights["log_std"]
        self._activation = torch.tanh if self.metadata["activation"] == "tanh" else torch.relu
        self._generator = torch.Generator().manual_seed(0)

    # -- construction -------------------------------------------------------

    @classmethod
    def load(cls, path_or_name: str | os.PathLike[str] = "default") -> TuningPolicy:
        """Load a bundle directory, or a shipped bundle by name (``"default"``).

        Raises:
            agents.policy.bundle.BundleError: a specific subclass naming the faulty file.
        """
        path = resolve_bundle_path(path_or_name)
        from agents.policy.ensemble import EnsemblePolicy, is_ensemble

        if is_ensemble(path):  # several seeds acting on their mean (agents.policy.ensemble)
            return EnsemblePolicy.load(path)
        return cls(read_bundle(path), source=path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this policy as a bundle directory (each file atomically)."""
        return write_bundle(path, self._contents)

    # -- properties -----------------------------------------------------------

    @property
    def observation_size(self) -> int:
        return self._observation_size

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])

    @property
    def decisions_per_run(self) -> int | None:
        """Typical control decisions per training run in meta-training (for choosing
        a deployed control interval), or None if the bundle does not say."""
        value = self.metadata.get("control", {}).get("decisions_per_run")
        return int(value) if value is not None else None

    @property
    def contents(self) -> BundleContents:
        return copy.deepcopy(self._contents)

    def feature_extractor(self, n_runs: int = 1) -> FeatureExtractor:
        """A fresh `FeatureExtractor` for ``n_runs`` runs, matching this policy's inputs
        (the feature version the bundle records)."""
        return FeatureExtractor(self.space, n_runs, spec_version=self.feature_spec_version)

    @property
    def feature_spec_version(self) -> int:
        """The observation's feature version (`hpo_env.features.FEATURE_SPEC_VERSIONS`)."""
        return int(self.metadata["feature_spec_version"])

    # -- inference --------------------------------------------------------------

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize's ``normalize_obs`` exactly: float64 arithmetic, clip, float32."""
        obs = np.asarray(obs)
        if not self._norm_obs:
            return obs.astype(np.float32)
        # np.minimum/np.maximum are np.clip with finite bounds (NaN kept), at a fifth
        # of its call overhead on one observation (this runs at every decision).
        normed = np.minimum(
            np.maximum((obs - self._mean) / self._std, -self._clip_obs), self._clip_obs
        )
        return normed.astype(np.float32)

    def action_mean(self, normalized_obs: Tensor) -> Tensor:
        """The actor's Gaussian mean for already-normalised observations [B, D]."""
        x = normalized_obs if normalized_obs.dtype == torch.float32 else normalized_obs.float()
        for weight, bias in self._layers:
            x = self._activation(torch.nn.functional.linear(x, weight, bias))
        return torch.nn.functional.linear(x, *self._head)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions [B, k] in [-1, 1] for raw feature observations [B, D] (or [D]).

        Args:
            obs: observations from `feature_extractor`.
            deterministic: the Gaussian mean (deployment); False samples from the
                policy's own noise (seed it with `seed`).
        """
        if type(obs) is not np.ndarray or obs.dtype != np.float32:
            obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        if single:
            obs = obs[None, :]
        if obs.ndim != 2 or obs.shape[1] != self.observation_size:
            raise ValueError(
                f"expected observations of shape [B, {self.observation_size}] "
                f"(features {self.feature_names[:3]}...), got {obs.shape}"
            )
        with torch.no_grad():
            if deterministic:
                mean = self._mean_action(obs)
            else:
                mean, log_std = self._gaussian(obs)
                noise = torch.randn(mean.shape, generator=self._generator)
                mean = mean + noise * log_std.exp()
        actions = np.minimum(np.maximum(mean.numpy(), -1.0), 1.0).astype(np.float32, copy=False)
        return actions[0] if single else actions

    def _gaussian(self, obs: np.ndarray) -> tuple[Tensor, Tensor]:
        """The actions' Gaussian (mean [B, k], log std [k]) for raw observations [B, D]."""
        return self._mean_action(obs), self._log_std

    def _mean_action(self, obs: np.ndarray) -> Tensor:
        """The Gaussian's mean [B, k] alone: the deterministic action before its clip."""
        return self.action_mean(torch.from_numpy(self.normalize(obs)))

    def seed(self, seed: int) -> None:
        """Seed the noise of ``act(..., deterministic=False)``."""
        self._generator.manual_seed(int(seed))

    # -- integrations (written by the deploy engineer; imported lazily) -------------

    def scheduler(
        self, optimizer: Any, total_steps: int, control_interval: int | None = None, **kwargs: Any
    ) -> Any:
        """A `agents.deploy.scheduler.TuningScheduler` driving ``optimizer``'s hyperparameters.

        Raises:
            hpo_env.errors.ConfigTypeError: an optimizer the policy was not meta-trained
                with (e.g. ``torch.optim.LBFGS``), in one line naming the supported ones.
        """
        from agents.deploy.scheduler import TuningScheduler

        return TuningScheduler(
            self, optimizer, total_steps, control_interval=control_interval, **kwargs
        )

    def sb3_callback(self, **kwargs: Any) -> Any:
        """A `agents.deploy.sb3_callback.TuningCallback` controlling a stable-baselines3 run."""
        from agents.deploy.sb3_callback import TuningCallback

        return TuningCallback(self, **kwargs)

    def __repr__(self) -> str:
        source = f"{self.source}" if self.source is not None else "<memory>"
        return (
            f"TuningPolicy(source={source!r}, hparams={list(self.space.names)}, "
            f"net_arch={self.metadata['net_arch']}, features={self.observation_size})"
        )
