"""B control episodes over one batched run: the machinery `HPOEnv` (B=1) and
`HPOVecEnv` (B=num_envs) share (each decision is one `hpo_env.interval.run_interval`), so a sub-environment and a single environment
on the same task and seed produce the same observations.

Episodes advance in *rounds*: all B runs of a round train one task in
lockstep for ``task.control_steps`` decisions. A run that diverges mid-round
ends its episode (terminated) and restarts on a fresh seed of the same task
with the rest of the round as its budget, so the batch never waits on it.

With a paired reward (``RewardConfig(paired=True)``) the batched run holds 2B
rows: rows ``0..B-1`` are the policy's runs, rows ``B..2B-1`` their twins, built
from the same seeds (``run_seeds + run_seeds``: same task instance, init, data
order and start rate) and driven by the prior alone (action 0 at every
decision): on RL tasks, the space's RL prior, so with none the twin keeps the
run's start rate (the user's constant rate). The policy never observes a twin; observations, rewards and infos
have B rows. A run and its twin restart together, on the same fresh seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hpo_env.clock import DecisionClock
from hpo_env.device import resolve_device
from hpo_env.errors import ConfigError
from hpo_env.features import FEATURE_SPEC_VERSION, FeatureExtractor
from hpo_env.interval import run_interval, validation_seen
from hpo_env.protocol import BatchedRun, Task, TaskSampler, is_rl_task
from hpo_env.reward import RewardConfig, objective_of, paired_reward, progress_reward
from hpo_env.space import HyperparameterSpace

DEFAULT_VAL_EVERY_CHOICES = (1, 1, 2, 5, 0)
"""Per-episode cadence (in decisions) at which the *observation* receives the
validation loss; 0 means never. Deployed users report validation at any cadence
or not at all, so the policy is trained on all of these. The reward always uses
the validation objective, measured every decision (on a fixed subsample between
an episode's start and end, see `DEFAULT_VAL_FRACTION`)."""

DEFAULT_VAL_FRACTION = 0.25
"""Share of the validation set the reward measures between an episode's first and
last decision (a fixed subsample per run; the observation and the episode's ends
use the full set, so returns are unchanged). Validation was the largest cost of a
decision on small-batch tasks; a quarter cuts it ~4x where no controller looks.
(A task may keep a floor: control runs always play all their evaluation episodes.)"""

_MAX_SEED = 2**31 - 1


@dataclasses.dataclass
class StepResult:
    obs: np.ndarray  # [B, D] float32
    reward: np.ndarray  # [B] float32
    terminated: np.ndarray  # [B] bool
    infos: list[dict[str, Any]]


class EpisodeEngine:
    """Runs B hyperparameter-control episodes on one `BatchedRun` at a time."""

    def __init__(
        self,
        sampler: TaskSampler,
        space: HyperparameterSpace,
        n_runs: int,
        reward_config: RewardConfig | None = None,
        val_every_choices: Sequence[int] = DEFAULT_VAL_EVERY_CHOICES,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        device: str | torch.device = "cpu",
        feature_spec_version: int = FEATURE_SPEC_VERSION,
    ) -> None:
        if not 0.0 < val_fraction <= 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1], got {val_fraction=}")
        if n_runs < 1:
            raise ValueError(f"n_runs must be >= 1, got {n_runs=}")
        if not val_every_choices or any(int(v) < 0 for v in val_every_choices):
            raise ValueError(
                f"val_every_choices must be non-empty ints >= 0, got {val_every_choices!r}"
            )
        self.sampler = sampler
        self.space = space
        self.n_runs = n_runs
        self.reward_config = reward_config or RewardConfig()
        self.val_every_choices = tuple(int(v) for v in val_every_choices)
        self.val_fraction = float(val_fraction)
        self.device = resolve_device(device)
        self.features = FeatureExtractor(space, n_runs, spec_version=feature_spec_version)
        # Decisions are the unit: a run's budget is its episode's length (per call).
        # RL tasks' runs (and their twins) read the space's RL prior (`start_round`).
        self.clocks = {
            rl: DecisionClock(space.for_rl() if rl else space, total_steps=1, control_interval=1)
            for rl in (False, True)
        }
        self.clock = self.clocks[False]
        self.run: BatchedRun | None = None
        self.task: Task | None = None
        self.run_seeds: list[int] = []
        self.val_every = 1
        self.round_step = 0
        self.episode_start = np.zeros(n_runs, dtype=np.int64)
        self.first_val = torch.ones(n_runs)
        self.prev_val = torch.ones(n_runs)
        # What the policy controls; the run receives `space.scheduled` of it (the
        # same unless a spec carries an annealing prior).
        self.base_hparams: dict[str, Tensor] = {}
        self.episode_return = np.zeros(n_runs, dtype=np.float64)
        # Paired reward: the twins' own values, reward measurements and divergence.
        self.paired = self.reward_config.paired
        self.twin_hparams: dict[str, Tensor] = {}
        self.twin_first_val = torch.ones(n_runs)
        self.twin_prev_val = torch.ones(n_runs)
        self.twin_diverged = torch.zeros(n_runs, dtype=torch.bool)

    @property
    def n_rows(self) -> int:
        """Rows of the batched run: B, or 2B with twins."""
        return 2 * self.n_runs if self.paired else self.n_runs

    # -- rounds and episodes ------------------------------------------------

    @property
    def round_length(self) -> int:
        return self.task.control_steps if self.task is not None else 0

    @property
    def round_over(self) -> bool:
        return self.task is None or self.round_step >= self.round_length

    def start_round(
        self,
        rng: np.random.Generator,
        task: Task | None = None,
        run_seeds: Sequence[int] | None = None,
        val_every: int | None = None,
    ) -> np.ndarray:
        """Draw a task (unless given) and B run seeds; returns the initial observations."""
        self.task = task if task is not None else self.sampler.sample(rng)
        self.clock = self.clocks[is_rl_task(self.task)]
        if run_seeds is None:
            run_seeds = [int(s) for s in rng.integers(0, _MAX_SEED, size=self.n_runs)]
        if len(run_seeds) != self.n_runs:
            raise ValueError(f"expected {self.n_runs} run seeds, got {len(run_seeds)}")
        if val_every is None:
            val_every = int(rng.choice(self.val_every_choices))
        if val_every < 0:
            raise ValueError(f"val_every must be >= 0 (0 = never), got {val_every=}")
        self.val_every = val_every
        self.run_seeds = [int(s) for s in run_seeds]
        seeds = self.run_seeds + self.run_seeds if self.paired else self.run_seeds
        self.run = self.task.build(seeds, device=self.device)
        self.round_step = 0
        self.episode_start[:] = 0
        self.episode_return[:] = 0.0
        first = self.run.evaluate().clone()
        self.first_val, twin_first = first[: self.n_runs].clone(), first[self.n_runs :].clone()
        self.prev_val = self.first_val.clone()
        hparams = self._current_hparams()
        self.base_hparams = {k: v[: self.n_runs].clone() for k, v in hparams.items()}
        if self.paired:
            self.twin_hparams = {k: v[self.n_runs :].clone() for k, v in hparams.items()}
            self.twin_first_val, self.twin_prev_val = twin_first, twin_first.clone()
            self.twin_diverged = torch.zeros(self.n_runs, dtype=torch.bool)
        obs = self.features.reset(self.base_hparams)
        return obs.numpy()

    def reset_runs(self, indices: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """Restart runs ``indices`` on fresh seeds mid-round; returns their initial observations."""
        assert self.run is not None
        seeds = [int(s) for s in rng.integers(0, _MAX_SEED, size=len(indices))]
        if self.paired:  # the twin restarts with its run, on the same seed
            twins = [int(i) + self.n_runs for i in indices]
            self.run.reset_runs([*indices, *twins], seeds + seeds)
        else:
            self.run.reset_runs(list(indices), seeds)
        for i, s in zip(indices, seeds):
            self.run_seeds[i] = s
        mask = torch.zeros(self.n_runs, dtype=torch.bool)
        mask[list(indices)] = True
        all_val = self.run.evaluate()
        val = all_val[: self.n_runs]
        if self.paired:
            twin_val = all_val[self.n_runs :]
            self.twin_first_val = torch.where(mask, twin_val, self.twin_first_val)
            self.twin_prev_val = torch.where(mask, twin_val, self.twin_prev_val)
            self.twin_diverged = self.twin_diverged & ~mask
        self.first_val = torch.where(mask, val, self.first_val)
        self.prev_val = torch.where(mask, val, self.prev_val)
        self.episode_start[list(indices)] = self.round_step
        self.episode_return[list(indices)] = 0.0
        # A fresh run starts from the task's own values, not the prior-scaled ones.
        fresh = self.run.get_hyperparameters()
        self.base_hparams = {
            k: torch.where(mask, fresh[k][: self.n_runs].float(), v)
            for k, v in self.base_hparams.items()
        }
        if self.paired:
            self.twin_hparams = {
                k: torch.where(mask, fresh[k][self.n_runs :].float(), v)
                for k, v in self.twin_hparams.items()
            }
        obs = self.features.reset(self.base_hparams, mask=mask)
        return obs.numpy()[list(indices)]

    def _current_hparams(self) -> dict[str, Tensor]:
        assert self.run is not None
        values = self.run.get_hyperparameters()
        return {k: v for k, v in values.items() if k in self.space.names}

    # -- one decision ---------------------------------------------------------

    def step(self, actions: np.ndarray) -> StepResult:
        if self.run is None or self.task is None or self.round_over:
            raise RuntimeError(
                "EpisodeEngine.step called with no active round: call start_round first"
            )
        actions_t = torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(self.n_runs, -1)
        episode_len = self.round_length - self.episode_start
        decision = self.clock.decide(
            self.base_hparams,
            actions_t,
            steps_done=self.round_step - self.episode_start,
            total_steps=episode_len,
        )
        new_hparams, in_effect = decision.chosen, decision.in_effect
        self.base_hparams = new_hparams
        self.round_step += 1
        episode_step = self.round_step - self.episode_start
        progress = torch.as_tensor(
            self.clock.progress(episode_step, episode_len), dtype=torch.float32
        )
        ends = torch.as_tensor(episode_step >= episode_len)
        seen = validation_seen(episode_step, self.val_every, self.n_runs)
        first_val = self.first_val
        if self.paired:
            # The twins: action 0 through the same clock, so a run given action 0
            # receives exactly its twin's values.
            twin = self.clock.decide(
                self.twin_hparams,
                torch.zeros_like(actions_t),
                steps_done=self.round_step - 1 - self.episode_start,
                total_steps=episode_len,
            )
            self.twin_hparams = twin.chosen
            in_effect = {k: torch.cat([v, twin.in_effect[k]]) for k, v in in_effect.items()}
            progress, ends = self._tile(progress), self._tile(ends)
            seen = torch.cat([seen, torch.zeros_like(seen)])  # nobody observes a twin
            first_val = torch.cat([self.first_val, self.twin_first_val])
        outcome = run_interval(
            self.run,
            self.task.updates_per_step,
            first_val=first_val,
            progress=progress,
            seen=seen,
            decision=in_effect,
            reward_config=self.reward_config,
            val_fraction=self.val_fraction,
            ends=ends,
        )
        stats, val, diverged = outcome.stats, outcome.val, outcome.diverged
        if self.paired:
            b = self.n_runs
            stats, progress = stats.slice(slice(0, b)), progress[:b]
            in_effect = {k: v[:b] for k, v in in_effect.items()}
            val, twin_val = val[:b], val[b:]
            diverged, twin_diverged = diverged[:b], diverged[b:]
        # The policy sees the values it chose (the space's names), as deployed.
        obs = self.features.observe(stats.replace(hparams=new_hparams))

        if self.paired:
            # A diverged twin is held at its divergence value (`objective_of`'s rule).
            self.twin_diverged = self.twin_diverged | twin_diverged
            held, _ = objective_of(
                twin_val.numpy(),
                self.twin_first_val.numpy(),
                self.twin_diverged.numpy(),
                self.reward_config,
            )
            twin_val = torch.as_tensor(held, dtype=torch.float32)
            reward = paired_reward(
                self.prev_val,
                val,
                self.twin_prev_val,
                twin_val,
                diverged,
                torch.as_tensor(self.episode_return, dtype=torch.float32),
                self.reward_config,
                twin_diverged=self.twin_diverged,
            )
            self.twin_prev_val = twin_val
        else:
            reward = progress_reward(
                self.prev_val, val, self.first_val, diverged, self.reward_config
            )
        self.prev_val = torch.where(diverged, self.prev_val, val)
        terminated = diverged.numpy() | (episode_step >= episode_len)
        self.episode_return += reward.numpy()

        # Tensors to Python lists once, not B element reads per field (same values).
        diverged_l, val_l = diverged.tolist(), val.tolist()
        train_l, progress_l = stats.train_loss.tolist(), progress.expand(self.n_runs).tolist()
        names = list(in_effect)
        columns = [in_effect[k].tolist() for k in names]
        hparams_l = (
            [dict(zip(names, row)) for row in zip(*columns)]
            if names
            else [{} for _ in range(self.n_runs)]
        )
        task_name, family = self.task.name, self.task.family
        infos: list[dict[str, Any]] = [
            {
                "diverged": d,
                "val_loss": v,
                "train_loss": t,
                "progress": p,
                "hparams": h,
                "task": task_name,
                "family": family,
            }
            for d, v, t, p, h in zip(diverged_l, val_l, train_l, progress_l, hparams_l)
        ]
        ratio = val / self.first_val
        for i in np.flatnonzero(terminated).tolist():
            infos[i]["final_val_ratio"] = ratio[i].item() if not diverged_l[i] else float("nan")
            infos[i]["episode_return"] = float(self.episode_return[i])
            if self.paired:
                infos[i]["twin_val_loss"] = float(self.twin_prev_val[i])
        return StepResult(obs.numpy(), reward.numpy(), terminated, infos)

    def _tile(self, values: Tensor) -> Tensor:
        """[B] (or a scalar) -> [2B]: the same value for a run and its twin."""
        return torch.as_tensor(values).expand(self.n_runs).repeat(2)
