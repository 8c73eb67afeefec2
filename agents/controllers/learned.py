"""The learned tuning policy as a `Controller`, driven exactly as the environment drives it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from agents.controllers.protocol import PolicyLike, RolloutContext
from hpo_env.clock import DecisionClock
from hpo_env.features import FeatureExtractor
from hpo_env.protocol import is_rl_task
from hpo_env.space import HyperparameterSpace
from hpo_env.stats import StepStats


def _in_space(values: Mapping[str, Tensor], space: HyperparameterSpace) -> dict[str, Tensor]:
    # Exactly EpisodeEngine._current_hparams: hyperparameters the run lacks stay absent.
    return {k: v for k, v in values.items() if k in space.names}


class PolicyController:
    """A tuning policy driven exactly as `hpo_env.core.EpisodeEngine` drives it.

    First decision: ``FeatureExtractor.reset`` from the run's hyperparameters.
    Later decisions: ``FeatureExtractor.observe`` of the interval's statistics,
    with ``hparams`` replaced by the values this controller applied (as the
    engine does). Actions go through the engine's `hpo_env.clock.DecisionClock`
    (``space.apply`` on the values this controller chose last, the run's at
    first; the run receives ``space.scheduled`` of them at the coming interval's
    midpoint, where the space has an annealing prior). Hyperparameters a run
    does not use are skipped.

    Args:
        policy: A `TuningPolicy` (or anything with ``space``,
            ``feature_extractor(n_runs)`` and ``act(obs, deterministic)``).
        deterministic: Use the policy's mean action (evaluation) or sample.
        name: Label in reports.
    """

    def __init__(
        self, policy: PolicyLike, deterministic: bool = True, name: str = "policy"
    ) -> None:
        for attr in ("space", "feature_extractor", "act"):
            if not hasattr(policy, attr):
                raise TypeError(
                    f"policy must have .space, .feature_extractor(n_runs) and .act(obs), "
                    f"got {type(policy).__name__} without .{attr}"
                )
        self.policy = policy
        self.deterministic = deterministic
        self.name = name
        self.space: HyperparameterSpace = policy.space
        self.features: FeatureExtractor | None = None
        self.context: RolloutContext | None = None
        self.clock: DecisionClock | None = None
        self._applied: dict[str, Tensor] = {}
        self._decisions = 0
        self.last_obs: Tensor | None = None
        """The observation behind the latest decision, [B, D] (for parity checks)."""

    def __repr__(self) -> str:
        return (
            f"PolicyController(deterministic={self.deterministic}, space={list(self.space.names)})"
        )

    def reset(self, context: RolloutContext) -> None:
        self.context = context
        self.features = self.policy.feature_extractor(context.n_runs)
        # One decision per interval: the budget counts decisions, as in the environment;
        # RL tasks read the space's RL prior, as in the environment.
        space = self.space.for_rl() if is_rl_task(context.task) else self.space
        self.clock = DecisionClock(space, total_steps=context.control_steps)
        self._applied = {}
        self._decisions = 0
        self.last_obs = None

    def decide(self, stats: StepStats | None) -> dict[str, Tensor]:
        if self.features is None or self.context is None or self.clock is None:
            raise RuntimeError("PolicyController.decide called before reset(context)")
        if stats is None:
            current = _in_space(self.context.initial_hparams, self.space)
            obs = self.features.reset(current)
        else:
            current = self._applied
            obs = self.features.observe(stats.replace(hparams=self._applied))
        self.last_obs = obs
        actions = self.policy.act(obs.numpy(), deterministic=self.deterministic)
        actions_t = torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(
            self.context.n_runs, -1
        )
        decision = self.clock.decide(current, actions_t, steps_done=self._decisions)
        self._applied = decision.chosen
        self._decisions += 1
        return decision.in_effect
