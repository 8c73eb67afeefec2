"""`TuningCallback`: a deployed tuning policy controlling a stable-baselines3 run.

It schedules the learning rate and the entropy coefficient of an actor-critic
run (PPO, A2C, SAC) from that run's own statistics, following the conventions
of the control task family the policy was meta-trained on (`tasks.control`):

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

SB3 re-applies ``lr_schedule(progress)`` to its optimizers at every ``train()``
and reads the entropy coefficient directly (PPO / A2C: ``model.ent_coef``; SAC
with a fixed coefficient: its own tensor ``model.ent_coef_tensor``), so the
callback replaces ``model.lr_schedule`` with a `ControlledValue` and writes the
coefficient where the algorithm reads it; it never edits an optimizer itself.

What it will not control, it refuses in one line or leaves alone:

- an algorithm without an entropy coefficient (DQN, TD3, DDPG) or SAC with
  ``ent_coef="auto"`` (SAC tunes it itself): `ConfigError` at ``learn()``;
- an entropy coefficient of 0 (PPO's and A2C's default) lies outside the
  policy's log-scale range: it stays 0 (one warning) and the policy controls
  the learning rate alone.

One SB3 update is many optimizer steps (PPO: ``n_epochs`` times its minibatches, 320 at
its defaults; SAC/TD3: ``gradient_steps``), where the family's update is one A2C step.
The interval's ``||Δθ|| / ||θ||`` is therefore divided by the optimizer steps per update
(`gradient_steps_per_update`), so the policy reads the change per optimizer step it was
meta-trained on (without it, PPO's change looked ~300x too large and the policy cut
SB3's 3e-4 to ~7e-6: README, "RL runs").

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
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from agents.common.extras import require
from agents.controllers.protocol import PolicyLike
from agents.deploy.budget import decisions_per_run
from agents.deploy.run_stats import StatsTracker
from hpo_env.clock import DecisionClock
from hpo_env.errors import ConfigError
from hpo_env.stats import RL_LOSS_OFFSET

# stable-baselines3 is the `train` extra: a clear one-line error names it when missing.
BaseCallback = require(
    "stable_baselines3.common.callbacks", extra="train", purpose="TuningCallback"
).BaseCallback

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


def _rollout_size(model: Any) -> int | None:
    """Environment steps per rollout (one update): ``n_steps`` or ``train_freq``, times
    envs; None where rollouts are counted in episodes (no fixed length)."""
    n_envs = int(getattr(model, "n_envs", 1) or 1)
    train_freq = getattr(model, "train_freq", None)  # off-policy (they have n_steps too)
    if train_freq is None:
        return int(model.n_steps) * n_envs
    frequency = getattr(train_freq, "frequency", 1)
    unit = str(getattr(getattr(train_freq, "unit", None), "value", "step"))
    return max(1, int(frequency)) * n_envs if unit == "step" else None


def gradient_steps_per_update(model: Any) -> int:
    """Optimizer steps one ``model.train()`` makes: PPO ``n_epochs`` x its minibatches
    per rollout; off-policy algorithms ``gradient_steps`` (-1: one per environment step
    collected); A2C (and anything else) 1."""
    n_epochs = getattr(model, "n_epochs", None)
    batch_size = getattr(model, "batch_size", None)
    if n_epochs is not None and batch_size and hasattr(model, "n_steps"):  # PPO
        samples = int(model.n_steps) * int(getattr(model, "n_envs", 1) or 1)
        return max(1, int(n_epochs) * math.ceil(samples / int(batch_size)))
    gradient_steps = getattr(model, "gradient_steps", None)
    if isinstance(gradient_steps, int) and not isinstance(gradient_steps, bool):
        if gradient_steps > 0:
            return gradient_steps
        return max(1, _rollout_size(model) or 1)  # -1: as many as steps collected
    return 1


def _actor_of(model: Any) -> list[torch.nn.Parameter]:
    actor = getattr(model, "actor", None)  # SAC/TD3 keep a separate actor network
    if isinstance(actor, torch.nn.Module):
        return [p for p in actor.parameters() if p.requires_grad]
    return actor_parameters(model.policy)


class TuningCallback(BaseCallback):  # type: ignore[misc,valid-type]
    """Schedules an SB3 actor-critic run's learning rate and entropy coefficient.

    Args:
        policy: The tuning policy (`agents.policy.TuningPolicy` or anything `PolicyLike`).
        return_range: ``(lo, hi)`` episodic returns mapped to 0 and 1 (e.g. ``(0, 500)``
            for CartPole-v1); None uses the running min / max of the returns seen.
        control_interval: Updates (rollout + train) per decision; default
            ``max(1, n_updates // decisions_per_run)``; where rollouts are episodes
            (SAC/TD3 ``train_freq=(n, "episode")``), the first update after each
            ``total_timesteps // decisions_per_run`` environment steps.
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
        # An RL run: the learning rate reads the bundle's RL prior (the same prior as
        # supervised runs in bundles that record none apart).
        self.space = policy.space.for_rl()
        self.requested_interval = control_interval
        self.control_interval = control_interval or 1
        self.deterministic = deterministic
        self.history: list[dict[str, Any]] = []
        self.values: dict[str, np.float32] = {}
        self.last_obs: np.ndarray | None = None
        self._seen_lo = math.inf
        self._seen_hi = -math.inf
        self._trained = False
        self.n_updates = 0
        self.interval_timesteps: int | None = None
        """Environment steps per decision where rollouts are episodes (else None)."""
        self._decided_at = 0

    # -- SB3 hooks ------------------------------------------------------------------

    def _on_training_start(self) -> None:
        model: Any = self.model
        start = {"learning_rate": float(model.lr_schedule(model._current_progress_remaining))}
        if "entropy_coef" in self.space.names:
            entropy = self._entropy_start(model)
            if entropy is not None:
                start["entropy_coef"] = entropy
        total = int(model._total_timesteps)
        size = _rollout_size(model)
        self.interval_timesteps = None
        if self.requested_interval is None and size is None:
            # Episode-long rollouts: decide at the first update after each
            # 1/decisions_per_run of the remaining budget, counted in environment steps.
            remaining = max(1, total - model.num_timesteps)
            self.interval_timesteps = max(1, remaining // decisions_per_run(self.tuning_policy))
            self.control_interval = 1
        elif self.requested_interval is None:
            n_rollouts = max(1, math.ceil((total - model.num_timesteps) / size))
            self.control_interval = max(1, n_rollouts // decisions_per_run(self.tuning_policy))
        # An interval's length in environment steps (episode rollouts: the mean episode's
        # length is unknown up front, so the budget's share stands for it).
        interval_steps = self.interval_timesteps or self.control_interval * (
            size or int(getattr(model, "n_envs", 1) or 1)
        )
        self.values = {name: np.float32(start[name]) for name in self.space.names if name in start}
        self.schedule = ControlledValue(start["learning_rate"])
        model.lr_schedule = self.schedule
        # Counted in environment steps: an interval is control_interval rollouts.
        self.clock = DecisionClock(self.space, max(total, 1), interval_steps)
        self.tracker = StatsTracker(_actor_of(model))
        self.steps_per_update = gradient_steps_per_update(model)
        self.features = self.tuning_policy.feature_extractor(1)
        self.last_obs = self.features.reset(self.values).numpy()
        self._decide(self.last_obs, loss=float("nan"))

    def _entropy_start(self, model: Any) -> float | None:
        """The run's entropy coefficient if the callback can control it, None to leave
        it alone (0); raises where the algorithm has none or tunes it itself."""
        name = type(model).__name__
        value = getattr(model, "ent_coef", None)
        if value is None:
            raise ConfigError(
                f"TuningCallback cannot control {name}: it has no entropy coefficient and the "
                "policy was meta-trained to set one (use PPO, A2C or SAC)"
            )
        if isinstance(value, str):
            raise ConfigError(
                f"TuningCallback cannot control {name} with ent_coef={value!r}: {name} tunes it "
                "itself; pass a fixed ent_coef (e.g. 0.01) for the callback to control it"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"TuningCallback: {name}.ent_coef must be a number, got {value!r}")
        spec = self.space["entropy_coef"]
        if spec.log and value <= 0:
            warnings.warn(
                f"{name} ent_coef={value} is left as you set it: the policy's entropy_coef range is "
                f"[{spec.low:g}, {spec.high:g}] on a log scale; pass e.g. ent_coef=0.01 for the "
                "callback to control it (it now controls the learning rate only)",
                stacklevel=3,
            )
            return None
        return float(value)

    def _write_entropy(self, value: float) -> None:
        model: Any = self.model
        model.ent_coef = value
        tensor = getattr(model, "ent_coef_tensor", None)
        if isinstance(tensor, torch.Tensor):  # SAC with a fixed coefficient reads this
            with torch.no_grad():
                tensor.fill_(value)

    def _on_rollout_start(self) -> None:
        # Right after model.train() (or at the very start): close the update.
        if not self._trained:
            return
        self._trained = False
        self.n_updates += 1
        if self.interval_timesteps is not None:
            due = self.model.num_timesteps - self._decided_at >= self.interval_timesteps
        else:
            due = self.tracker.n_recorded >= self.control_interval
        if due and self.tracker.n_recorded:
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
        progress = self.clock.progress(model.num_timesteps)
        run = self.tracker.end_interval_run(self.values, progress)
        # The change per optimizer step, as in meta-training (see the module's docstring).
        run = run._replace(update_ratio=run.update_ratio / self.steps_per_update)
        self.last_obs = self.features.observe_run(run)
        self._decide(self.last_obs, loss=float(np.float32(run.train_loss)))

    def _decide(self, obs: np.ndarray, loss: float) -> None:
        action = self.tuning_policy.act(obs, deterministic=self.deterministic)
        model: Any = self.model
        decision = self.clock.decide_one(self.values, action, steps_done=model.num_timesteps)
        self._decided_at = int(model.num_timesteps)
        self.values.update(decision.chosen)
        hyperparameters = decision.in_effect
        if "learning_rate" in hyperparameters:
            self.schedule.value = hyperparameters["learning_rate"]
        if "entropy_coef" in hyperparameters:
            self._write_entropy(hyperparameters["entropy_coef"])
        entry = {
            "num_timesteps": int(self.model.num_timesteps),
            "update": self.n_updates,
            "hyperparameters": hyperparameters,
            # The policy's own choice, before an annealing prior (the same without one).
            "policy_values": {name: float(v) for name, v in self.values.items()},
            "loss": loss,
        }
        self.history.append(entry)
        for name, value in hyperparameters.items():
            self.logger.record(f"tuning/{name}", value)
        if self.verbose >= 1:
            print(f"TuningCallback: update {self.n_updates}: {entry['hyperparameters']}")
