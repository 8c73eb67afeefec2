"""Gymnasium view of hyperparameter control: statistics, features, spaces,
reward, a single-run environment and a batched SB3 vector environment.

Importing the package registers the environment ids and nothing more; the
names below load on first use (``from hpo_env import FeatureExtractor`` works
as before). That keeps ``hpo_env.errors`` light for the CLI's ``--help``, and
``HPOVecEnv`` / ``make_vec_env`` need stable-baselines3 (the ``train`` extra),
which deploying a shipped policy does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

if TYPE_CHECKING:
    from hpo_env.env import DEFAULT_HPARAMS, HPOEnv
    from hpo_env.episodes import EpisodeEngine
    from hpo_env.features import FEATURE_SPEC_VERSION, FeatureExtractor
    from hpo_env.protocol import BatchedRun, Task, TaskSampler
    from hpo_env.reward import RewardConfig
    from hpo_env.space import HyperparameterSpace, HyperparameterSpec
    from hpo_env.stats import StepStats
    from hpo_env.vec_env import HPOVecEnv, make_vec_env

_LAZY = {
    "DEFAULT_HPARAMS": "hpo_env.env",
    "HPOEnv": "hpo_env.env",
    "EpisodeEngine": "hpo_env.episodes",
    "FEATURE_SPEC_VERSION": "hpo_env.features",
    "FeatureExtractor": "hpo_env.features",
    "BatchedRun": "hpo_env.protocol",
    "Task": "hpo_env.protocol",
    "TaskSampler": "hpo_env.protocol",
    "RewardConfig": "hpo_env.reward",
    "HyperparameterSpace": "hpo_env.space",
    "HyperparameterSpec": "hpo_env.space",
    "StepStats": "hpo_env.stats",
    "HPOVecEnv": "hpo_env.vec_env",
    "make_vec_env": "hpo_env.vec_env",
}

__all__ = [
    "DEFAULT_HPARAMS",
    "FEATURE_SPEC_VERSION",
    "BatchedRun",
    "EpisodeEngine",
    "FeatureExtractor",
    "HPOEnv",
    "HPOVecEnv",
    "HyperparameterSpace",
    "HyperparameterSpec",
    "RewardConfig",
    "StepStats",
    "Task",
    "TaskSampler",
    "make_vec_env",
]

# One registration per id. Episodes end on their own (budget or divergence),
# so no TimeLimit is needed; the bound below is only a safety net.
_ENV_IDS = {
    "hpo_env/HPO-v0": {"split": "train"},
    "hpo_env/HPO-heldout-v0": {"split": "heldout"},
}
for _env_id, _kwargs in _ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id, entry_point="hpo_env.env:HPOEnv", kwargs=_kwargs, max_episode_steps=10_000
        )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpo_env' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
