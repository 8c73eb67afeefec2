"""Gymnasium view of hyperparameter control: statistics, features, spaces,
reward, a single-run environment and a batched SB3 vector environment.

``HPOVecEnv`` and ``make_vec_env`` load lazily: they need stable-baselines3
(the ``train`` extra), which deploying a shipped policy does not.
"""

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from hpo_env.env import DEFAULT_HPARAMS, HPOEnv
from hpo_env.episodes import EpisodeEngine
from hpo_env.features import FEATURE_SPEC_VERSION, FeatureExtractor
from hpo_env.protocol import BatchedRun, Task, TaskSampler
from hpo_env.reward import RewardConfig
from hpo_env.space import HyperparameterSpace, HyperparameterSpec
from hpo_env.stats import StepStats

if TYPE_CHECKING:
    from hpo_env.vec_env import HPOVecEnv, make_vec_env

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
    # Lazy: the vec env imports stable-baselines3, an extra (``pip install "hpo-rl[train]"``).
    if name in ("HPOVecEnv", "make_vec_env"):
        from hpo_env import vec_env

        return getattr(vec_env, name)
    raise AttributeError(f"module 'hpo_env' has no attribute {name!r}")
