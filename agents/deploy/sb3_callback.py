"""`TuningCallback`: a deployed tuning policy controlling a stable-baselines3 run.

It schedules the learning rate and the entropy coefficient of an on-policy
run (PPO, A2C) from that run's own statistics, following the conventions of
the control task family the policy was meta-trained on (`tasks.control`):

- one *update* is one rollout followed by ``model.train()``; a decision comes
  before the first update and after every ``control_interval`` updates;
- the "training loss" of an update is ``1 + LOSS_OFFSET - normalised return``:
  the mean of the latest episodic returns (one per environment, from
  ``model.ep_info_buffer``) mapped to [0, 1] by ``return_range`` (or the running
  min / max of the returns seen), measured before the update; no episode yet
  counts as the worst return;
- the gradient statistics are those of the actor's parameters (the value
  network is left out, as the family does), read from ``.grad`` right after
  ``train()``; ``update_ratio`` compares the actor's parameters around the
  interval's updates; progress is ``num_timesteps / total_timesteps``.

SB3 re-applies ``lr_schedule(progress)`` to its optimizer at every ``train()``
and reads ``ent_coef`` directly, so the callback replaces ``model.lr_schedule``
with a `ControlledValue` and sets ``model.ent_coef``; it never edits the
optimizer itself.

Differences from meta-training worth knowing: the gradient SB3 leaves in
``.grad`` is that of the last minibatch's full loss (policy gradient plus the
entropy term, after gradient clipping), where the family observes the
policy-gradient term of its single A2C step; the features use it only through
scale-free ratios and cosines.

Example:
    >>> from stable_baselines3 import PPO  # doctest: +SKIP
    >>> model = PPO("MlpPolicy", "CartPole-v1")  # doctest: +SKIP
    >>> callback = TuningPolicy.load("default").sb3_callback(return_range=(0, 500))  # doctest: +SKIP
    >>> model.learn(50_000, callback=callback)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.controllers.protocol import PolicyLike
from agents.deploy.run_stats import StatsTracker
from agents.deploy.scheduler import decisions_per_run
from hpo_env.stats import RL_LOSS_OFFSET

LOSS_OFFSET = RL_LOSS_OFFSET
"""Added to ``1 - normalised return`` so the objective stays > 0, as in the control family."""

_VALUE_PREFIXES = ("value_net", "mlp_extractor.value_net", "vf_features_extractor")


class ControlledValue:
    """A constant schedule whose value the callback moves; picklable, so a model
    saved mid-run keeps the last controlled value as a plain number."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __call__(self, progress_remaining: float) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"ControlledValue({self.value:.4g})"


def actor_parameters(policy: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable parameters of an SB3 actor-critic policy minus its value network."""
    return [
        p
        for name, p in policy.named_parameters()
        if p.requires_grad and not name.startswith(_VALUE_PREFIXES)
    ]


class TuningCallback(BaseCallback):
    """Schedules an on-policy SB3 run's learning rate and entropy coefficient.

    Args:
        policy: The tuning policy (`agents.policy.TuningPolicy` or anything `PolicyLike`).
        return_range: ``(lo, hi)`` episodic returns mapped to 0 and 1 (e.g. ``(0, 500)``
            for CartPole-v1); None uses the running min / max of the returns seen.
        control_interval: Updates (rollout + train) per decision; default
            ``max(1, n_updates // decisions_per_run)``.
        deterministic: Use the policy's mean action (True) or sample.
        verbose: SB3 verbosity; 1 prints every decision.

    Attributes:
        history: One dict per decision: ``num_timesteps``, ``update``,
            ``hyperparameters`` (now in effect) and ``loss`` (the interval's mean objective).
    """

    def __init__(
        self,
        policy: PolicyLike,
        return_range: Sequence[float] | None = None,
        control_interval: int | None = None,
        deterministic: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if return_range is not None:
            lo, hi = (float(v) for v in return_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(
                    f"return_range must be two finite numbers lo < hi, got {tuple(return_range)!r}"
                )
            self.return_range: tuple[float, float] | None = (lo, hi)
        else:
            self.return_range = None
        if control_interval is not None and (
            isinstance(control_interval, bool)
            or not isinstance(control_interval, int)
            or control_interval < 1
        ):
            raise ValueError(
                f"control_interval must be a positive int (updates per decision), got {control_interval!r}"
            )
        self.tuning_policy = policy
        self.space = policy.space
        self.requested_interval = control_interval
        self.control_interval = control_interval or 1
        self.deterministic = deterministic
        self.history: list[dict[str, Any]] = []
        self.values: dict[str, torch.Tensor] = {}
        self.last_obs: np.ndarray | None = None
        self._seen_lo = math.inf
        self._seen_hi = -math.inf
        self._trained = False
        self.n_updates = 0

    # -- SB3 hooks ------------------------------------------------------------------

    def _on_training_start(self) -> None:
        model: Any = self.model  # an OnPolicyAlgorithm (PPO, A2C); checked below
        if not hasattr(model, "ent_coef") or not isinstance(
            getattr(model, "ent_coef", None), (int, float)
        ):
            raise TypeError(
                f"TuningCallback controls on-policy runs with a float ent_coef (PPO, A2C), "
                f"got {type(model).__name__} with ent_coef={getattr(model, 'ent_coef', None)!r}"
            )
        total = int(model._total_timesteps)
        per_rollout = int(model.n_steps) * int(model.n_envs)
        if self.requested_interval is None:
            n_rollouts = max(1, math.ceil((total - model.num_timesteps) / per_rollout))
            self.control_interval = max(1, n_rollouts // decisions_per_run(self.tuning_policy))
        start = {
            "learning_rate": float(model.lr_schedule(model._current_progress_remaining)),
            "entropy_coef": float(model.ent_coef),
        }
        self.values = {
            name: torch.tensor([start[name]], dtype=torch.float32)
            for name in self.space.names
            if name in start
        }
        self.schedule = ControlledValue(start["learning_rate"])
        model.lr_schedule = self.schedule
        self.tracker = StatsTracker(actor_parameters(model.policy))
        self.features = self.tuning_policy.feature_extractor(1)
        self.last_obs = self.features.reset(dict(self.values)).numpy()
        self._decide(self.last_obs, loss=float("nan"))

    def _on_rollout_start(self) -> None:
        # Right after model.train() (or at the very start): close the update.
        if not self._trained:
            return
        self._trained = False
        self.n_updates += 1
        if self.tracker.n_recorded >= self.control_interval:
            self._end_interval()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # Right before model.train(): the objective of the policy about to be updated.
        self.tracker.record(self._objective())
        self._trained = True

    def _on_training_end(self) -> None:
        if self._trained:  # the last train() happened after the last rollout
            self._on_rollout_start()

    # -- internals ----------------------------------------------------------------

    def _normalised_return(self) -> float:
        buffer = self.model.ep_info_buffer
        if not buffer:
            return 0.0  # no episode yet counts as the worst return
        recent = [float(info["r"]) for info in list(buffer)[-int(self.model.n_envs) :]]
        for r in recent:
            self._seen_lo, self._seen_hi = min(self._seen_lo, r), max(self._seen_hi, r)
        lo, hi = self.return_range or (self._seen_lo, self._seen_hi)
        if not hi > lo:
            return 0.0
        return float(np.mean([min(max((r - lo) / (hi - lo), 0.0), 1.0) for r in recent]))

    def _objective(self) -> float:
        return 1.0 + LOSS_OFFSET - self._normalised_return()

    def _end_interval(self) -> None:
        model = self.model
        progress = model.num_timesteps / max(int(model._total_timesteps), 1)
        stats = self.tracker.end_interval(self.values, progress)
        stats = stats.replace(episode_return=torch.tensor([self._normalised_return()]))
        self.last_obs = self.features.observe(stats).numpy()
        self._decide(self.last_obs, loss=float(stats.train_loss[0]))

    def _decide(self, obs: np.ndarray, loss: float) -> None:
        action = np.asarray(
            self.tuning_policy.act(obs, deterministic=self.deterministic),
            dtype=np.float32,
        )
        k = len(self.space)
        if action.size != k:
            raise ValueError(
                f"the policy returned an action of shape {action.shape}, expected {k} components "
                f"{list(self.space.names)} for one run"
            )
        self.values.update(self.space.apply(self.values, torch.as_tensor(action.reshape(1, k))))
        if "learning_rate" in self.values:
            self.schedule.value = float(self.values["learning_rate"][0])
        if "entropy_coef" in self.values:
            self.model.ent_coef = float(self.values["entropy_coef"][0])  # type: ignore[attr-defined]
        hyperparameters = {name: float(v[0]) for name, v in self.values.items()}
        entry = {
            "num_timesteps": int(self.model.num_timesteps),
            "update": self.n_updates,
            "hyperparameters": hyperparameters,
            "loss": loss,
        }
        self.history.append(entry)
        for name, value in hyperparameters.items():
            self.logger.record(f"tuning/{name}", value)
        if self.verbose >= 1:
            print(f"TuningCallback: update {self.n_updates}: {entry['hyperparameters']}")
