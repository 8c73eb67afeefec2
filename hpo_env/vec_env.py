"""`HPOVecEnv`: a stable-baselines3 `VecEnv` whose sub-environments are one batched run."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from hpo_env.distributions import resolve_sampler, resolve_task
from hpo_env.env import DEFAULT_HPARAMS, build_space
from hpo_env.episodes import DEFAULT_VAL_EVERY_CHOICES, DEFAULT_VAL_FRACTION, EpisodeEngine
from hpo_env.errors import ConfigError
from hpo_env.features import FEATURE_SPEC_VERSION, FeatureExtractor
from hpo_env.protocol import Task, TaskSampler
from hpo_env.reward import RewardConfig
from hpo_env.space import HyperparameterSpace


class HPOVecEnv(VecEnv):
    """``num_envs`` hyperparameter-control episodes stepped as one batched run.

    Follows SB3's auto-reset conventions: a finished sub-environment's last
    observation is in ``infos[i]["terminal_observation"]`` and the returned
    observation is the first of its next episode; ``infos[i]["TimeLimit.truncated"]``
    is always False because a run's budget end is a true end (progress is observed).

    Sub-env i on task ``t`` with run seed ``s`` yields the same observations as
    ``HPOEnv`` reset with ``options={"task": t, "run_seed": s}`` (and the same
    ``val_every``); ``get_attr("run_seed")`` tells the seeds in use.

    ``task_groups`` (opt-in, default 1) splits the sub-envs into that many equal
    groups of consecutive indices, each an `EpisodeEngine` with its own rounds and
    its own task, so that one PPO rollout sees ``task_groups`` times as many task
    instances for the same number of decisions. With 1, everything is as above:
    one task per round for all sub-envs.
    """

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        distribution: str | TaskSampler = "default",
        split: str = "train",
        hparams: Sequence[str] | HyperparameterSpace = DEFAULT_HPARAMS,
        reward_config: RewardConfig | None = None,
        val_every_choices: Sequence[int] = DEFAULT_VAL_EVERY_CHOICES,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        device: str | torch.device = "cpu",
        task: Task | str | None = None,
        distribution_kwargs: dict[str, Any] | None = None,
        feature_spec_version: int = FEATURE_SPEC_VERSION,
        task_groups: int = 1,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(task_groups, int) or task_groups < 1 or num_envs % task_groups:
            raise ConfigError(
                f"task_groups must be a positive int dividing num_envs={num_envs}, "
                f"got {task_groups!r}"
            )
        self.sampler = resolve_sampler(distribution, split=split, **(distribution_kwargs or {}))
        self.space = build_space(hparams)
        self.group_size = num_envs // task_groups
        self.engines = [
            EpisodeEngine(
                self.sampler,
                self.space,
                self.group_size,
                reward_config,
                val_every_choices,
                val_fraction=val_fraction,
                device=device,
                feature_spec_version=feature_spec_version,
            )
            for _ in range(task_groups)
        ]
        self.engine = self.engines[0]
        self.fixed_task = resolve_task(self.sampler, task) if task is not None else None
        self.split = split
        self.rng = np.random.default_rng(seed)
        self._actions: np.ndarray | None = None
        self._episode_started = np.full(num_envs, time.time())
        super().__init__(
            num_envs,
            FeatureExtractor.observation_space(self.space, feature_spec_version),
            self.space.action_space(),
        )

    # -- VecEnv API -------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        if self._seeds[0] is not None:
            self.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        obs = np.concatenate(
            [engine.start_round(self.rng, task=self.fixed_task) for engine in self.engines]
        )
        self.reset_infos = [self._episode_info(i) for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait called before step_async")
        actions, self._actions = self._actions, None
        parts = [
            self._step_group(engine, actions[g * self.group_size : (g + 1) * self.group_size])
            for g, engine in enumerate(self.engines)
        ]
        if len(parts) == 1:
            return parts[0]
        obs, rewards, dones, infos = zip(*parts)
        return (
            np.concatenate(obs),
            np.concatenate(rewards),
            np.concatenate(dones),
            [info for group in infos for info in group],
        )

    def _step_group(self, engine: EpisodeEngine, actions: np.ndarray) -> VecEnvStepReturn:
        result = engine.step(actions)
        obs, dones, infos = result.obs.copy(), result.terminated.copy(), result.infos
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = result.obs[i]
            infos[i]["TimeLimit.truncated"] = False
        if engine.round_over:
            obs = engine.start_round(self.rng, task=self.fixed_task)
        elif dones.any():
            restart = [int(i) for i in np.flatnonzero(dones)]
            obs[restart] = engine.reset_runs(restart, self.rng)
        return obs, result.reward.copy(), dones, infos

    def close(self) -> None:
        for engine in self.engines:
            engine.run = None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [self._slot_attr(attr_name, i) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        # Sub-envs share one engine: settings apply to all of them from the next round.
        if attr_name == "task":
            self.fixed_task = resolve_task(self.sampler, value) if value is not None else None
        elif hasattr(self.engine, attr_name):
            for engine in self.engines:
                setattr(engine, attr_name, value)
        else:
            raise AttributeError(
                f"HPOVecEnv sub-environments have no settable attribute {attr_name!r}"
            )

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self.engine, method_name, None)
        if method is None or not callable(method):
            raise AttributeError(f"HPOVecEnv has no sub-environment method {method_name!r}")
        return [
            getattr(self._slot(i)[0], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def _slot(self, i: int) -> tuple[EpisodeEngine, int]:
        """Sub-env ``i``'s engine and its index there."""
        return self.engines[i // self.group_size], i % self.group_size

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def _slot_attr(self, name: str, i: int) -> Any:
        engine, i = self._slot(i)
        per_slot = {
            "run_seed": lambda: engine.run_seeds[i],
            "task": lambda: engine.task,
            "val_every": lambda: engine.val_every,
            "episode_step": lambda: int(engine.round_step - engine.episode_start[i]),
            "hparams": lambda: {k: float(v[i]) for k, v in engine._current_hparams().items()},
            "observation_space": lambda: self.observation_space,
            "action_space": lambda: self.action_space,
            "render_mode": lambda: None,
            "spec": lambda: None,
        }
        if name in per_slot:
            return per_slot[name]()
        if hasattr(engine, name):
            return getattr(engine, name)
        raise AttributeError(f"HPOVecEnv sub-environments have no attribute {name!r}")

    def _episode_info(self, i: int) -> dict[str, Any]:
        engine, i = self._slot(i)
        return {
            "run_seed": engine.run_seeds[i],
            "task": engine.task.name if engine.task else None,
        }

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        return super()._get_indices(indices)


def make_vec_env(num_envs: int, seed: int = 0, split: str = "train", **kwargs: Any) -> HPOVecEnv:
    """An SB3 `VecEnv` of ``num_envs`` sub-environments that are one batched run.

    Keyword arguments go to `HPOVecEnv` (``distribution``, ``hparams``,
    ``reward_config``, ``val_every_choices``, ``val_fraction``, ``device``, ``task``,
    ``distribution_kwargs``, ``feature_spec_version``, ``task_groups``). ``device`` (``cpu`` default, ``cuda``, ``cuda:N``,
    ``auto``) is where the batched runs compute; observations and rewards are CPU
    NumPy arrays whatever it is.

    Example:
        >>> env = make_vec_env(2, device="cpu")  # doctest: +SKIP
        >>> env.engine.device  # doctest: +SKIP
        device(type='cpu')
    """
    return HPOVecEnv(num_envs, seed=seed, split=split, **kwargs)
