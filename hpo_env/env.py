"""`HPOEnv`: one base-network training run as a Gymnasium environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from hpo_env.distributions import resolve_sampler, resolve_task
from hpo_env.episodes import DEFAULT_VAL_EVERY_CHOICES, DEFAULT_VAL_FRACTION, EpisodeEngine
from hpo_env.features import FEATURE_SPEC_VERSION, FeatureExtractor
from hpo_env.protocol import TaskSampler
from hpo_env.reward import RewardConfig
from hpo_env.space import HyperparameterSpace

DEFAULT_HPARAMS = ("learning_rate", "entropy_coef")
"""Controlled by default: the learning rate of every run, and the entropy
coefficient of RL base runs (supervised runs ignore that action component)."""


def build_space(hparams: Sequence[str] | HyperparameterSpace) -> HyperparameterSpace:
    if isinstance(hparams, HyperparameterSpace):
        return hparams
    if isinstance(hparams, str):
        raise TypeError(f"hparams must be a sequence of names, got the string {hparams!r}")
    return HyperparameterSpace.from_names(hparams)


class HPOEnv(gym.Env[np.ndarray, np.ndarray]):
    """Hyperparameter control of one training run.

    Every ``reset`` draws a new task from the distribution (or takes
    ``options["task"]``, a task or task name); each ``step`` applies the action
    to the hyperparameters, trains ``task.updates_per_step`` inner updates and
    returns the new observation and the validation progress as reward.

    ``device`` (``cpu`` default, ``cuda``, ``cuda:N``, ``auto``; `hpo_env.device`) is
    where the run computes; observations and rewards are CPU values whatever it is.
    ``val_fraction`` is the share of the validation set the reward measures between
    an episode's first and last decision (`hpo_env.episodes.DEFAULT_VAL_FRACTION`).

    Opt-in (issue 26): ``reward_config=RewardConfig(paired=True)`` pays the run's log
    progress minus its twin's (a second row of the same batched run, same seed,
    driven by the prior alone; `hpo_env.episodes`); ``feature_spec_version=3``
    observes the run-relative, K-invariant features (`hpo_env.features`).

    Reset options: ``task`` (a `Task` or a name the distribution knows),
    ``run_seed`` (the run's seed, otherwise drawn from the env's RNG) and
    ``val_every`` (validation cadence seen by the observation; 0 = never).

    Example:
        >>> import gymnasium as gym, hpo_env
        >>> env = gym.make("hpo_env/HPO-v0")
        >>> obs, info = env.reset(seed=0)
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it so)

    def __init__(
        self,
        distribution: str | TaskSampler = "default",
        split: str = "train",
        hparams: Sequence[str] | HyperparameterSpace = DEFAULT_HPARAMS,
        reward_config: RewardConfig | None = None,
        val_every_choices: Sequence[int] = DEFAULT_VAL_EVERY_CHOICES,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        device: str | torch.device = "cpu",
        distribution_kwargs: dict[str, Any] | None = None,
        feature_spec_version: int = FEATURE_SPEC_VERSION,
    ) -> None:
        super().__init__()
        self.sampler = resolve_sampler(distribution, split=split, **(distribution_kwargs or {}))
        self.space = build_space(hparams)
        self.engine = EpisodeEngine(
            self.sampler,
            self.space,
            1,
            reward_config,
            val_every_choices,
            val_fraction=val_fraction,
            device=device,
            feature_spec_version=feature_spec_version,
        )
        self.observation_space = FeatureExtractor.observation_space(
            self.space, feature_spec_version
        )
        self.action_space = self.space.action_space()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task", "run_seed", "val_every"}
        if unknown:
            raise ValueError(
                f"unknown reset options {sorted(unknown)}, expected some of ['task', 'run_seed', 'val_every']"
            )
        task = resolve_task(self.sampler, options["task"]) if "task" in options else None
        run_seeds = [int(options["run_seed"])] if "run_seed" in options else None
        obs = self.engine.start_round(
            self.np_random, task=task, run_seeds=run_seeds, val_every=options.get("val_every")
        )
        task = self.engine.task
        if task is None:  # start_round always sets it; this keeps the type checker honest
            raise RuntimeError("HPOEnv.reset: no task was drawn")
        info = {"task": task.name, "family": task.family, "run_seed": self.engine.run_seeds[0]}
        return obs[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self.engine.step(np.asarray(action, dtype=np.float32).reshape(1, -1))
        return (
            result.obs[0],
            float(result.reward[0]),
            bool(result.terminated[0]),
            False,
            result.infos[0],
        )
