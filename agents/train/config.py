"""`TrainConfig`: everything that defines one PPO meta-training run, plus presets.

Presets are named instances (`PRESETS`), not files: ``smoke`` is a seconds-long
end-to-end run for tests, ``default`` makes the shipped bundle (about 6 minutes on
one CPU core), ``baseline`` is the recipe before issue 26, ``full`` is for a bigger
machine, ``recipe`` adds the functional families and the paired reward (hours).

Example:
    >>> from agents.train.config import get_preset
    >>> config = get_preset("smoke")
    >>> config.n_envs
    8
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

from agents.common.validation import apply_overrides, check_field_types
from hpo_env import DEFAULT_HPARAMS, HyperparameterSpace
from hpo_env.device import check_device_name
from hpo_env.distributions import resolve_sampler
from hpo_env.errors import ConfigError, unknown_name_error
from hpo_env.features import check_feature_version
from hpo_env.protocol import TaskSampler
from hpo_env.space import SAME_PRIOR

EVAL_SEED_BASE = 2**31
"""Meta-training draws run seeds from [0, 2**31 - 1) (see `hpo_env.episodes`); evaluation
seeds start here (the convention of `agents.benchmark.config.eval_seeds`)."""

WandbMode = Literal["offline", "online", "disabled"]
Backend = Literal["local", "ray"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One meta-training run: PPO across a distribution of training tasks."""

    total_timesteps: int = 102_400
    """Environment steps (control decisions, summed over sub-envs) to train for."""
    n_envs: int = 32
    """Sub-environments of the batched vec env: runs trained in lockstep per task."""
    seed: int = 0
    """Seeds PPO, the task distribution draws and the run seeds."""
    n_steps: int = 64
    """PPO rollout length per sub-env; one rollout is n_steps * n_envs decisions."""
    batch_size: int = 256
    """PPO minibatch size (should divide n_steps * n_envs)."""
    n_epochs: int = 10
    """PPO optimisation epochs per rollout."""
    learning_rate: float = 3e-4
    """Adam step size of the PPO agent (not of the base runs)."""
    gamma: float = 1.0
    """Discount factor. 1: the return is the final validation objective (the reward
    telescopes), so early gains are worth no more than the result they lead to."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clipping parameter."""
    ent_coef: float = 0.0
    """Entropy bonus of the PPO agent."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping of the PPO agent."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and of the critic (separate networks, tanh)."""
    log_std_init: float = -0.5
    """Initial log standard deviation of the Gaussian actions (actions live in [-1, 1])."""
    norm_reward: bool = False
    """Normalise rewards in VecNormalize. Off by default: rewards are already
    scale-free log validation progress, bounded per step, and a running reward
    scale would make returns of different training phases incomparable."""
    distribution: str = "default"
    """Task distribution: a name registered under the ``hpo_env.distributions``
    entry points, or ``module:factory`` (called with ``split=`` and the
    distribution kwargs)."""
    control_weight: float | None = 0.15
    """Share of control (CartPole-style) tasks in the distribution; None keeps the
    distribution's own default."""
    hparams: tuple[str, ...] = tuple(DEFAULT_HPARAMS)
    """Controlled hyperparameter names (the action components)."""
    lr_prior: str | None = "cosine_warmup"
    """Annealing prior on the learning rate (`hpo_env.space.PRIORS`): the policy's value
    is multiplied by it, so doing nothing is cosine with warm-up from the start rate and
    the policy learns corrections. None: the policy sets the rate alone."""
    entropy_off_share: float = 0.0
    """Share of control tasks trained with no entropy bonus and no ``entropy_coef`` to
    control, as SB3 PPO/A2C at their default ``ent_coef=0`` (passed to the recipe
    distributions, `tasks.recipe_distribution`; 0 passes nothing)."""
    control_start_lr: float | None = None
    """Where control tasks' start rates are centred in meta-training (the recipe
    distributions' ``control_start_lr``); None keeps the family's own 3e-3."""
    rl_lr_prior: str | None = SAME_PRIOR
    """The learning rate's prior on RL (control) runs, in meta-training and in the SB3
    callback: ``"same"`` (``lr_prior``), None (none: a run's twin, with the paired
    reward, keeps the user's constant rate) or a key of `hpo_env.space.PRIORS`."""
    eval_every: int = 40_960
    """Evaluate on held-out tasks every this many timesteps (0 = only at the end)."""
    n_eval_tasks: int = 4
    """Held-out tasks used by the periodic evaluation (a fixed draw)."""
    eval_seeds: tuple[int, ...] = tuple(range(EVAL_SEED_BASE, EVAL_SEED_BASE + 4))
    """Run seeds of the periodic evaluation (each task is run once per seed); from
    2**31 up, so they never coincide with a meta-training run seed."""
    checkpoint_every: int = 8_192
    """Write a checkpoint every this many timesteps (at rollout boundaries)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    out_dir: str = "runs/train"
    """Run directory: config.json, checkpoints/, bundle/, wandb/."""
    wandb_mode: WandbMode = "offline"
    """Weights & Biases mode; offline needs no account (``wandb sync`` later)."""
    wandb_project: str = "hpo-rl"
    """Weights & Biases project name."""
    wandb_name: str | None = None
    """Weights & Biases run name (None: wandb picks one)."""
    backend: Backend = "local"
    """Where environments run: this process, or Ray actors (needs the ray extra)."""
    ray_address: str | None = None
    """Ray cluster address for the ray backend (None: start a local Ray)."""
    ray_workers: int = 2
    """Ray actors for the ray backend, each holding a batched run."""
    torch_threads: int = 1
    """torch intra-op threads; 1 keeps runs reproducible and shares the machine."""
    device: str = "cpu"
    """Where the batched training runs compute: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``
    (CUDA if available, else CPU). Observations and rewards reach PPO as CPU arrays
    and the PPO agent itself stays on the CPU (its small MLPs run fastest there)."""
    progress_bar: bool = True
    """Show a tqdm progress bar with ETA on stderr."""
    paired_reward: bool = False
    """Lever 1 (issue 26): every run has a twin (same instance, init, data order and
    start rate) driven by the prior alone; the reward is the run's log progress minus
    its twin's (`hpo_env.reward.RewardConfig.paired`). Doubles the runs' compute."""
    feature_spec_version: int = 2
    """Lever 2: the observation's feature version (`hpo_env.features`): 2 (the shipped
    bundle's, with the absolute rate's position) or 3 (run-relative: the rate only
    relative to the user's start, K-invariant averages). Recorded in the bundle."""
    max_wall_time_s: float = 0.0
    """Stop meta-training at the rollout boundary nearest to this much wall time
    (seconds, resumed sessions included; the final evaluation and export come after
    it); 0 = no limit, train for ``total_timesteps``. Ablations compare recipes at
    equal wall-clock with it."""
    task_groups: int = 1
    """Lever 3: the sub-envs split into this many groups, each training its own task
    per round (`hpo_env.vec_env.HPOVecEnv`), so a rollout sees more task instances;
    must divide n_envs. 1: one task for every sub-env per round."""
    ensemble_size: int = 1
    """Lever 5: train the recipe with seeds ``seed .. seed + ensemble_size - 1``, one PPO
    run each (``out_dir/members/seed<s>/``, one after the other), and write their
    ensemble as the bundle: the policy acts on the members' mean action
    (`agents.train.members`). 1: one run, one policy."""
    member_workers: int = 1
    """Processes training an ensemble's members side by side (at most one per member and
    per CPU core); each member's weights are the same as when trained alone."""

    def __post_init__(self) -> None:
        check_field_types(self)
        positive = (
            "total_timesteps",
            "n_envs",
            "n_steps",
            "batch_size",
            "n_epochs",
            "n_eval_tasks",
            "checkpoint_every",
            "keep_checkpoints",
            "ray_workers",
            "torch_threads",
            "task_groups",
            "ensemble_size",
            "member_workers",
        )
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {name}={value!r}")
        if not (math.isfinite(self.max_wall_time_s) and self.max_wall_time_s >= 0):
            raise ConfigError(
                "TrainConfig.max_wall_time_s must be a finite number of seconds >= 0 "
                f"(0 = no limit), got {self.max_wall_time_s!r}"
            )
        if self.eval_every < 0:
            raise ConfigError(
                f"TrainConfig.eval_every must be >= 0 (0 = only at the end), got {self.eval_every!r}"
            )
        if self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be >= 0, got {self.seed!r}")
        for name, low, high in (
            ("gamma", 0.0, 1.0),
            ("gae_lambda", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if not (low <= value <= high):
                raise ConfigError(f"TrainConfig.{name} must be in [{low}, {high}], got {value!r}")
        for name in ("learning_rate", "clip_range", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"TrainConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("ent_coef", "vf_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"TrainConfig.{name} must be a finite number >= 0, got {value!r}")
        if not math.isfinite(self.log_std_init):
            raise ConfigError(f"TrainConfig.log_std_init must be finite, got {self.log_std_init!r}")
        if not self.net_arch or any(width < 1 for width in self.net_arch):
            raise ConfigError(
                f"TrainConfig.net_arch must be non-empty positive layer sizes, got {self.net_arch!r}"
            )
        if not (0.0 <= self.entropy_off_share <= 1.0):
            raise ConfigError(
                f"TrainConfig.entropy_off_share must be in [0, 1], got {self.entropy_off_share!r}"
            )
        if self.entropy_off_share > 0 or self.control_start_lr is not None:
            try:
                resolve_distribution(self, "train")
            except TypeError as error:
                raise ConfigError(
                    f"TrainConfig.entropy_off_share and control_start_lr need a distribution "
                    f"that takes them, such as "
                    f"tasks.recipe_distribution:fast_recipe_distribution; {self.distribution!r} "
                    f"does not ({error})"
                ) from None
        if self.control_weight is not None and not (0.0 <= self.control_weight <= 1.0):
            raise ConfigError(
                f"TrainConfig.control_weight must be in [0, 1] or None, got {self.control_weight!r}"
            )
        if not self.eval_seeds or any(s < 0 for s in self.eval_seeds):
            raise ConfigError(
                f"TrainConfig.eval_seeds must be non-empty non-negative ints, got {self.eval_seeds!r}"
            )
        if len(set(self.eval_seeds)) != len(self.eval_seeds):
            raise ConfigError(f"TrainConfig.eval_seeds has duplicates: {self.eval_seeds!r}")
        if not self.distribution:
            raise ConfigError("TrainConfig.distribution must be a non-empty name, got ''")
        if not self.out_dir:
            raise ConfigError("TrainConfig.out_dir must be a non-empty path, got ''")
        # Validates names and the prior, with a did-you-mean for typos.
        self.space()
        check_feature_version(self.feature_spec_version)
        if self.backend == "ray" and self.task_groups > 1 and self.task_groups % self.ray_workers:
            raise ConfigError(
                f"TrainConfig.task_groups={self.task_groups} does not split over "
                f"ray_workers={self.ray_workers}: each worker trains whole task groups, so "
                f"use a number of workers that divides {self.task_groups} (e.g. --ray-workers "
                f"{max(w for w in range(1, self.ray_workers + 1) if self.task_groups % w == 0)})"
            )
        if self.n_envs % self.task_groups:
            raise ConfigError(
                f"TrainConfig.task_groups={self.task_groups} must divide n_envs={self.n_envs} "
                "(each group trains n_envs / task_groups runs of its own task)"
            )
        # The spelling only: whether the device exists is checked where runs are built,
        # so a config written on a GPU machine still loads (and resumes) elsewhere.
        check_device_name(self.device)
        if self.ray_address is not None and self.backend != "ray":
            warnings.warn(
                f"TrainConfig.ray_address={self.ray_address!r} is ignored with backend={self.backend!r}; "
                "set backend='ray' to use it",
                stacklevel=3,
            )
        rollout = self.n_steps * self.n_envs
        if self.batch_size > rollout:
            raise ConfigError(
                f"TrainConfig.batch_size={self.batch_size} exceeds the rollout size "
                f"n_steps * n_envs = {rollout}; lower batch_size or raise n_steps/n_envs"
            )
        if rollout % self.batch_size:
            warnings.warn(
                f"TrainConfig.batch_size={self.batch_size} does not divide n_steps * n_envs = {rollout}: "
                "PPO will use a truncated last minibatch",
                stacklevel=3,
            )
        if self.total_timesteps < rollout:
            warnings.warn(
                f"TrainConfig.total_timesteps={self.total_timesteps} is below one rollout "
                f"(n_steps * n_envs = {rollout}): PPO still collects one full rollout",
                stacklevel=3,
            )

    def distribution_kwargs(self) -> dict[str, Any]:
        """The distribution's keyword arguments this config carries (both backends pass
        them: `agents.common.vec_env_config.vec_env_kwargs_from_config`)."""
        kwargs: dict[str, Any] = {}
        if self.control_weight is not None:
            kwargs["control_weight"] = self.control_weight
        if self.entropy_off_share > 0:  # only the recipe distributions take it
            kwargs["entropy_off_share"] = self.entropy_off_share
        if self.control_start_lr is not None:
            kwargs["control_start_lr"] = self.control_start_lr
        return kwargs

    def space(self) -> HyperparameterSpace:
        """The controlled hyperparameters, with the learning rate's prior (an unknown
        name raises `ConfigError` with a did-you-mean)."""
        return HyperparameterSpace.from_names(
            self.hparams, lr_prior=self.lr_prior, rl_lr_prior=self.rl_lr_prior
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys suggest the closest field."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise unknown_name_error("TrainConfig field", key, names)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ checks types

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SMOKE = TrainConfig(
    total_timesteps=512,
    n_envs=8,
    n_steps=16,
    batch_size=64,
    n_epochs=2,
    net_arch=(32, 32),
    control_weight=0.0,  # control steps cost ~10x a supervised step; keep the smoke run short
    eval_every=0,
    n_eval_tasks=1,
    eval_seeds=(EVAL_SEED_BASE, EVAL_SEED_BASE + 1),
    checkpoint_every=128,
    keep_checkpoints=3,
    out_dir="runs/smoke",
)
"""Seconds-long end-to-end run (tests, CI): 4 PPO iterations, a checkpoint each,
supervised tasks only (control tasks are an order of magnitude slower per step)."""

BASELINE = TrainConfig(seed=3)
"""The recipe before issue 26 (it made the bundle shipped until 2026-12-07): the absolute
rate's position among the features, one task for all 32 sub-envs per round, 102,400
decisions (~5.5 min on one core of an AMD EPYC with another job on the other). The
ablation (`agents.train.ablation`) starts every row from it."""

DEFAULT = dataclasses.replace(
    BASELINE,
    seed=1,
    total_timesteps=36_864,
    feature_spec_version=3,
    task_groups=8,
    distribution="tasks.recipe_distribution:fast_recipe_distribution",
    paired_reward=True,
    ensemble_size=3,
    member_workers=3,
    out_dir="runs/train",
)
"""Makes the shipped bundle: the ablation's ``paired`` row as a 3-seed ensemble (README,
"Toward a policy that finds each run's own rate"), chosen on the transfer suite's
validation split: over 6 training seeds its seeds' mean strict win rate vs constant /
cosine with warm-up was 0.79 / 0.81 (the ``groups`` row 0.76 / 0.77), and both of its
3-seed ensembles reached 0.87 / 0.90 and 0.90 / 0.90 (``groups``: 0.77 / 0.80, 0.77 /
0.73), all at 6 min of meta-training per seed on one AMD EPYC core. Run-relative,
K-invariant observation (feature version 3), 8 task groups of 4 runs (>= 8 task
instances per rollout), a third of tasks started within x2 of the usual rate, a twin
of every run driven by the prior alone (reward = log progress over the twin's); seeds
1, 2 and 3 for 36,864 decisions each (18 PPO updates, about what the 6-minute runs
reached), one after the other (5-6.5 min each on one core). On validation the shipped
ensemble scored 0.87 / 0.90 and the same command with ``--seed 4`` 0.90 / 0.90."""
FULL = TrainConfig(
    total_timesteps=1_000_000,
    n_envs=64,
    n_steps=128,
    batch_size=1024,
    n_epochs=10,
    net_arch=(128, 128),
    eval_every=50_000,
    n_eval_tasks=16,
    eval_seeds=tuple(range(EVAL_SEED_BASE, EVAL_SEED_BASE + 8)),
    checkpoint_every=25_000,
    out_dir="runs/full",
)
"""Hours on a bigger machine (or with ``backend='ray'``)."""

RECIPE = dataclasses.replace(
    BASELINE,
    seed=0,
    paired_reward=True,
    feature_spec_version=3,
    task_groups=8,
    distribution="tasks.recipe_distribution:recipe_distribution",
    out_dir="runs/recipe",
)
"""Issue 26's levers together on the baseline's 102,400 decisions, with the functional
families in the mix (hours on 2 cores: not in the ablation, not chosen): the paired (twin) reward (lever
1, twice the runs' compute per decision), the run-relative, K-invariant observation
(lever 2, feature version 3), and many tasks per update (lever 3): 8 task groups of 4
runs, so every PPO rollout of 64 decisions sees >= 8 task instances, drawn from
`tasks.recipe_distribution` (the functional train families with today's, a quarter of
draws SGD-momentum runs whose usual rate is 0.05-0.5, a third of tasks started within
x2 of the usual rate)."""

PRESETS: dict[str, TrainConfig] = {
    "smoke": SMOKE,
    "default": DEFAULT,
    "baseline": BASELINE,
    "full": FULL,
    "recipe": RECIPE,
}


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (unknown names suggest the closest).

    Example:
        >>> get_preset("smoke", seed=3).seed
        3
    """
    if name not in PRESETS:
        raise unknown_name_error("TrainConfig preset", name, list(PRESETS))
    return apply_overrides(PRESETS[name], overrides)


def resolve_distribution(config: TrainConfig, split: str) -> TaskSampler:
    """``config.distribution`` (a registered name or ``module:factory``) as a sampler of ``split``."""
    return resolve_sampler(config.distribution, split=split, **config.distribution_kwargs())
