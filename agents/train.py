"""Meta-training: PPO across a distribution of training tasks, with held-out
evaluation, atomic checkpoints, resume, tracking and the policy bundle.

The run directory (``config.out_dir``)::

    config.json          the exact TrainConfig (resume reads it back)
    checkpoints/         step_<num_timesteps>/{model.zip, vecnormalize.pkl, state.json}
    eval.jsonl           one line per held-out evaluation
    bundle/              the exported policy (weights + JSON, no pickle)
    wandb/               offline wandb runs (``wandb sync`` them later)

Checkpoints are taken at rollout boundaries. Each is written into a temporary
directory and renamed into place in one ``os.replace``, so a kill leaves
either the complete checkpoint or none, and never touches older ones.
Resuming restores the PPO model and optimizer, the VecNormalize statistics and
the RNG states, then continues ``num_timesteps`` to ``total_timesteps``; the
episodes in flight at the kill are dropped (a new round of tasks starts).

SB3 checkpoints are zip + pickle: fine for our own run directory; the bundle
never needs unpickling.

Example:
    >>> from agents.train import train
    >>> from agents.train_config import get_preset
    >>> bundle_dir = train(get_preset("smoke", out_dir="runs/smoke", wandb_mode="disabled"))
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from agents.bundle import (
    FORMAT_VERSION,
    BundleContents,
    actor_weights_from_sb3,
    json_safe,
    normalization_from_vecnormalize,
    write_bundle,
)
from agents.config import apply_overrides
from agents.files import atomic_write, atomic_write_json, atomic_write_text
from agents.tracking import Tracker
from agents.train_config import TrainConfig
from hpo_env import (
    FEATURE_SPEC_VERSION,
    FeatureExtractor,
    HyperparameterSpace,
    make_vec_env,
)
from hpo_env.distributions import resolve_sampler
from hpo_env.protocol import Task, TaskSampler

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BUNDLE_DIR = "bundle"
EVAL_LOG = "eval.jsonl"
MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "step_"
RESUMABLE_FIELDS = ("total_timesteps", "wandb_mode", "progress_bar", "wandb_name")
"""Fields ``--resume`` may change; every other field must stay what config.json says."""
ACTION_MAPPING = (
    "action a in [-1, 1]^k; component i multiplies hyperparameter i by 10**(a_i * max_step) "
    "for log-scale specs, adds a_i * max_step for linear ones, then clips to [low, high]; "
    "components for hyperparameters a run does not use are ignored"
)


# -- environments and tasks ------------------------------------------------------


def resolve_distribution(config: TrainConfig, split: str) -> str | TaskSampler:
    """``config.distribution`` as something `make_vec_env` takes.

    A registered name is passed through (with ``control_weight`` in the
    distribution kwargs); ``module:factory`` is imported and called with
    ``split=`` and the same kwargs.
    """
    kwargs = distribution_kwargs(config)
    if ":" not in config.distribution:
        return resolve_sampler(config.distribution, split=split, **kwargs)
    module_name, _, attr = config.distribution.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"TrainConfig.distribution={config.distribution!r} cannot be imported ({exc}); "
            "expected a registered name like 'default' or 'package.module:factory'"
        ) from None
    return factory(split=split, **kwargs)


def distribution_kwargs(config: TrainConfig) -> dict[str, Any]:
    return {} if config.control_weight is None else {"control_weight": config.control_weight}


def make_train_env(config: TrainConfig, seed: int | None = None) -> Any:
    """The raw (unwrapped) training VecEnv: batched local env or Ray workers."""
    if config.backend == "ray":
        from agents.ray_backend import make_ray_vec_env

        return make_ray_vec_env(config)
    return make_vec_env(
        config.n_envs,
        seed=config.seed if seed is None else seed,
        split="train",
        distribution=resolve_distribution(config, "train"),
        hparams=config.hparams,
    )


def heldout_tasks(config: TrainConfig) -> list[Task]:
    """A fixed draw of ``config.n_eval_tasks`` distinct held-out tasks.

    The draw depends only on the distribution and ``eval_seeds`` (not on the
    training seed), so evaluations of different runs are comparable.
    """
    sampler = resolve_distribution(config, "heldout")
    if isinstance(sampler, str):  # pragma: no cover - resolve_distribution returns samplers
        sampler = resolve_sampler(sampler, split="heldout")
    rng = np.random.default_rng(config.eval_seeds[0])
    tasks: dict[str, Task] = {}
    for _ in range(20 * config.n_eval_tasks):
        task = sampler.sample(rng)
        tasks.setdefault(task.name, task)
        if len(tasks) >= config.n_eval_tasks:
            break
    return list(tasks.values())


def control_info(config: TrainConfig, n_samples: int = 64) -> dict[str, Any]:
    """Typical control decisions per run and inner updates per decision in the
    training distribution (the deployed scheduler picks its interval from these)."""
    sampler = resolve_distribution(config, "train")
    rng = np.random.default_rng(config.seed)
    steps, updates, families = [], [], defaultdict(list)
    for _ in range(n_samples):
        task = sampler.sample(rng)  # type: ignore[union-attr]
        steps.append(int(task.control_steps))
        updates.append(int(task.updates_per_step))
        families[task.family].append(int(task.control_steps) * int(task.updates_per_step))
    return {
        "decisions_per_run": int(np.median(steps)),
        "decisions_per_run_range": [min(steps), max(steps)],
        "updates_per_step": int(np.median(updates)),
        "updates_per_step_range": [min(updates), max(updates)],
        "updates_per_run_by_family": {f: int(np.median(v)) for f, v in sorted(families.items())},
        "first_decision": "before the first update (from the initial hyperparameters)",
    }


# -- held-out evaluation ------------------------------------------------------------


class SB3PolicyView:
    """A PPO model + its VecNormalize seen as a `TuningPolicy`-like object
    (``space``, ``feature_extractor``, ``act``), for `agents.evaluation.rollout`."""

    def __init__(self, model: Any, vec_normalize: Any, space: HyperparameterSpace) -> None:
        self.model = model
        self.vec_normalize = vec_normalize
        self.space = space

    def feature_extractor(self, n_runs: int) -> FeatureExtractor:
        return FeatureExtractor(self.space, n_runs)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        actions, _ = self.model.predict(
            self.vec_normalize.normalize_obs(obs), deterministic=deterministic
        )
        return np.asarray(actions)


def _episode_returns(result: Any, divergence_penalty: float) -> np.ndarray:
    """What the environment's episode return would be for each run of a
    `RolloutResult`: log(first / final validation loss), or for a diverged run
    min(progress before diverging, 0) - penalty (see `hpo_env.reward`)."""
    first = np.asarray(result.first_val, dtype=np.float64)
    out = np.log(first / np.asarray(result.final_objective, dtype=np.float64))
    for i in np.flatnonzero(result.diverged):
        at = int(result.diverged_at[i])
        before = first[i] if at <= 0 else result.val_curve[i, at - 1]
        gained = np.log(first[i] / before) if np.isfinite(before) and before > 0 else 0.0
        out[i] = min(gained, 0.0) - divergence_penalty
    return out


def _summarize(results: Sequence[Any], returns: Sequence[np.ndarray]) -> dict[str, float]:
    diverged = np.concatenate([r.diverged for r in results]).astype(bool)
    ratios = np.concatenate([r.final_val / r.first_val for r in results])
    ok = ~diverged & np.isfinite(ratios)
    return {
        "mean_return": float(np.mean(np.concatenate(returns))),
        "final_val_ratio": float(np.mean(ratios[ok])) if ok.any() else float("nan"),
        "divergence_rate": float(diverged.mean()),
    }


def evaluate_heldout(
    policy: Any,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    val_every: int = 1,
    baseline_cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The deterministic ``policy`` vs a constant learning rate (action 0, i.e.
    the run's initial hyperparameters kept) on fixed tasks and run seeds,
    through `agents.evaluation.rollout` (the benchmark's loop).

    A run wins if its final validation objective is lower (a diverged run's
    objective is its divergence bound, so diverging loses; both diverged is a
    tie, counted 0.5). Returns flat metrics (``policy/*``, ``constant/*``,
    ``win_rate``) plus ``per_task`` details. ``baseline_cache`` (task name ->
    result) keeps the constant runs between calls: they do not depend on the
    policy, and they are half the cost.
    """
    from agents.baselines import ConstantController
    from agents.evaluation import PolicyController, rollout
    from hpo_env import RewardConfig

    penalty = RewardConfig().divergence_penalty
    collected: dict[str, list[Any]] = {"policy": [], "constant": []}
    returns: dict[str, list[np.ndarray]] = {"policy": [], "constant": []}
    wins: list[np.ndarray] = []
    per_task: dict[str, Any] = {}
    for task in tasks:
        key = f"{task.name}|{list(seeds)}|{val_every}"
        cache = baseline_cache if baseline_cache is not None else {}
        if key not in cache:
            cache[key] = rollout(ConstantController(), task, seeds, val_every=val_every)
        runs = {
            "policy": rollout(
                PolicyController(policy, deterministic=True), task, seeds, val_every=val_every
            ),
            "constant": cache[key],
        }
        ours, base = runs["policy"].final_objective, runs["constant"].final_objective
        task_wins = np.where(ours < base, 1.0, np.where(ours == base, 0.5, 0.0))
        wins.append(task_wins)
        per_task[task.name] = {"family": task.family, "win_rate": float(task_wins.mean())}
        for method, result in runs.items():
            ret = _episode_returns(result, penalty)
            collected[method].append(result)
            returns[method].append(ret)
            per_task[task.name][method] = _summarize([result], [ret])
    out: dict[str, Any] = {}
    for method in ("policy", "constant"):
        if collected[method]:
            out.update(
                {
                    f"{method}/{k}": v
                    for k, v in _summarize(collected[method], returns[method]).items()
                }
            )
    out["win_rate"] = float(np.concatenate(wins).mean()) if wins else float("nan")
    out["n_tasks"] = len(tasks)
    out["n_seeds"] = len(seeds)
    out["per_task"] = per_task
    return out


# -- checkpoints --------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    return {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state().tolist(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _base_env(vec_env: Any) -> Any:
    env = vec_env
    while hasattr(env, "venv"):
        env = env.venv
    return env


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


def checkpoint_is_valid(path: Path) -> bool:
    """All three files present, the zips readable and state.json parses."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        return (
            isinstance(state.get("num_timesteps"), int)
            and zipfile.is_zipfile(path / MODEL_FILE)
            and zipfile.ZipFile(path / MODEL_FILE).testzip() is None
            and (path / VECNORMALIZE_FILE).stat().st_size > 0
        )
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    for path in reversed(checkpoint_dirs(run_dir)):
        if checkpoint_is_valid(path):
            return path
        warnings.warn(f"skipping damaged checkpoint {path}", stacklevel=2)
    return None


def save_checkpoint(
    run_dir: Path, model: Any, vec_normalize: Any, progress: Mapping[str, Any], keep: int
) -> Path:
    """Write a checkpoint for ``model.num_timesteps`` atomically; prune to ``keep``.

    Files are written into a hidden temporary directory (each file itself via
    temp file + ``os.replace``), which is then renamed into place: a kill at
    any moment leaves older checkpoints untouched and no partial new one.
    """
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"{CHECKPOINT_PREFIX}{model.num_timesteps:012d}"
    final = root / name
    if final.exists():
        return final
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        atomic_write(staging / MODEL_FILE, lambda tmp: model.save(tmp))
        atomic_write(staging / VECNORMALIZE_FILE, lambda tmp: vec_normalize.save(tmp))
        state = {
            "num_timesteps": int(model.num_timesteps),
            "n_updates": int(getattr(model, "_n_updates", 0)),
            "rng": _rng_state(),
            "env_rng": _env_rng_state(vec_normalize),
            "saved_at": datetime.now(timezone.utc).isoformat(),
            **progress,
        }
        atomic_write_json(staging / STATE_FILE, json_safe(state))
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune_checkpoints(run_dir, keep)
    return final


def _env_rng_state(vec_env: Any) -> Any:
    """The task/seed RNG state of the training env: one numpy bit-generator state
    (local `HPOVecEnv`) or a list of them (one per Ray worker); None if unknown."""
    base = _base_env(vec_env)
    if hasattr(base, "get_rng_states"):
        return {"workers": base.get_rng_states()}
    rng = getattr(base, "rng", None)
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def _set_env_rng_state(vec_env: Any, state: Any) -> None:
    base = _base_env(vec_env)
    if state is None:
        return
    if isinstance(state, dict) and "workers" in state:
        if hasattr(base, "set_rng_states"):
            base.set_rng_states(state["workers"])
    elif isinstance(getattr(base, "rng", None), np.random.Generator):
        base.rng.bit_generator.state = state


def _prune_checkpoints(run_dir: Path, keep: int) -> None:
    for old in checkpoint_dirs(run_dir)[:-keep]:
        # Rename first: a kill mid-delete leaves a hidden directory, never a
        # half-deleted checkpoint that looks complete.
        trash = old.with_name(f".trash-{old.name}")
        with contextlib.suppress(OSError):
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _clean_staging(run_dir: Path) -> None:
    root = run_dir / CHECKPOINT_DIR
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(
                    missing_ok=True
                )


# -- callbacks ------------------------------------------------------------------------


class TrackerOutputFormat(KVWriter):
    """SB3 logger output that forwards every dump (PPO and env metrics) to the tracker."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        scalars = {
            k: float(v)
            for k, v in key_values.items()
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
        }
        self.tracker.log(scalars, step=step)

    def close(self) -> None:
        pass


class _Trainer:
    """Everything `train` keeps between callbacks; the callbacks are thin."""

    def __init__(
        self, config: TrainConfig, run_dir: Path, tracker: Tracker, progress: dict[str, Any]
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.tracker = tracker
        self.progress = progress  # last_checkpoint, last_eval, evals, wall_time_s
        self.space = HyperparameterSpace.from_names(config.hparams)
        self.eval_tasks: list[Task] | None = None
        self.baseline_cache: dict[str, Any] = {}
        self.started = time.monotonic()

    def wall_time(self) -> float:
        return float(self.progress.get("wall_time_s", 0.0)) + time.monotonic() - self.started

    def progress_state(self) -> dict[str, Any]:
        state = dict(self.progress)
        state["wall_time_s"] = self.wall_time()
        return state

    def maybe_checkpoint(self, model: Any, vec_normalize: Any, force: bool = False) -> None:
        step = int(model.num_timesteps)
        last = int(self.progress.get("last_checkpoint", 0))
        if step > 0 and (force or step - last >= self.config.checkpoint_every) and step != last:
            self.progress["last_checkpoint"] = step
            save_checkpoint(
                self.run_dir,
                model,
                vec_normalize,
                self.progress_state(),
                self.config.keep_checkpoints,
            )

    def maybe_evaluate(
        self, model: Any, vec_normalize: Any, force: bool = False
    ) -> dict[str, Any] | None:
        """Evaluate when ``eval_every`` timesteps passed since the last one (or if
        ``force``); a repeated call at the same timestep returns the stored result."""
        step = int(model.num_timesteps)
        last = int(self.progress.get("last_eval", -1))
        if step == last:
            return self.progress.get("last_eval_result") if force else None
        every = self.config.eval_every
        due = every > 0 and step - max(last, 0) >= every
        if not (force or due):
            return None
        if self.eval_tasks is None:
            self.eval_tasks = heldout_tasks(self.config)
        started = time.monotonic()
        view = SB3PolicyView(model, vec_normalize, self.space)
        result = evaluate_heldout(
            view, self.eval_tasks, self.config.eval_seeds, baseline_cache=self.baseline_cache
        )
        result["timesteps"] = step
        result["eval_time_s"] = time.monotonic() - started
        self.progress["last_eval"] = step
        self.progress["last_eval_result"] = json_safe(result)
        flat = {f"eval/{k}": v for k, v in result.items() if isinstance(v, (int, float))}
        self.tracker.log(flat, step=step)
        _append_jsonl(self.run_dir / EVAL_LOG, json_safe(result))
        return result


def _append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    # Rewritten atomically so a kill never leaves a torn last line.
    old = path.read_text() if path.exists() else ""
    atomic_write_text(path, old + json.dumps(record, sort_keys=True) + "\n")


class PeriodicCallback(BaseCallback):
    """Checkpoints and held-out evaluation at rollout boundaries."""

    def __init__(self, trainer: _Trainer) -> None:
        super().__init__()
        self.trainer = trainer

    def _on_rollout_start(self) -> None:
        vec_normalize = self.model.get_vec_normalize_env()
        self.trainer.maybe_checkpoint(self.model, vec_normalize)
        # Evaluation steps its own engines: the training envs are untouched.
        self.trainer.maybe_evaluate(self.model, vec_normalize)

    def _on_step(self) -> bool:
        return True


class EnvMetricsCallback(BaseCallback):
    """Per-rollout aggregates of the environment: hyperparameters, rewards,
    divergence and episode returns (recorded into the SB3 logger, which
    forwards them to the tracker with the PPO metrics)."""

    def _on_rollout_start(self) -> None:
        self.hparams: dict[str, list[float]] = defaultdict(list)
        self.rewards: list[float] = []
        self.steps_diverged = 0
        self.steps = 0
        self.episodes: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        env = self.model.get_vec_normalize_env()
        rewards = env.get_original_reward() if env is not None else self.locals.get("rewards")
        if rewards is not None:
            self.rewards.extend(float(r) for r in np.asarray(rewards).reshape(-1))
        for info in infos:
            self.steps += 1
            self.steps_diverged += bool(info.get("diverged", False))
            for name, value in info.get("hparams", {}).items():
                if value > 0 and math.isfinite(value):
                    self.hparams[name].append(math.log10(value))
            if "episode_return" in info:
                self.episodes.append(info)
        return True

    def _on_rollout_end(self) -> None:
        record = self.logger.record
        for name, values in self.hparams.items():
            arr = np.asarray(values)
            record(f"env/log10_{name}_mean", float(arr.mean()))
            record(f"env/log10_{name}_p10", float(np.percentile(arr, 10)))
            record(f"env/log10_{name}_p90", float(np.percentile(arr, 90)))
        if self.rewards:
            record("env/reward_mean", float(np.mean(self.rewards)))
        if self.steps:
            record("env/diverged_step_rate", self.steps_diverged / self.steps)
        if self.episodes:
            record("env/episodes", len(self.episodes))
            record(
                "env/episode_return_mean",
                float(np.mean([e["episode_return"] for e in self.episodes])),
            )
            record("env/divergence_rate", float(np.mean([e["diverged"] for e in self.episodes])))
            ratios = [
                e["final_val_ratio"]
                for e in self.episodes
                if math.isfinite(e.get("final_val_ratio", math.nan))
            ]
            if ratios:
                record("env/final_val_ratio_mean", float(np.mean(ratios)))
            by_family: dict[str, list[float]] = defaultdict(list)
            for e in self.episodes:
                by_family[e.get("family", "?")].append(e["episode_return"])
            for family, returns in by_family.items():
                record(f"env/episode_return/{family}", float(np.mean(returns)))


class ProgressBarCallback(BaseCallback):
    """tqdm progress bar with ETA (SB3's own bar needs rich)."""

    def __init__(self, trainer: _Trainer, total_timesteps: int) -> None:
        super().__init__()
        self.trainer = trainer
        self.total_timesteps = total_timesteps

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total_timesteps,
            initial=int(self.model.num_timesteps),
            unit="step",
            desc="meta-training",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=not self.trainer.config.progress_bar,
            file=sys.stderr,
        )

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        result = self.trainer.progress.get("last_eval_result")
        if result and result.get("win_rate") is not None:
            self.bar.set_postfix(win_rate=f"{result['win_rate']:.2f}", refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def make_callbacks(trainer: _Trainer, total_timesteps: int) -> list[BaseCallback]:
    return [
        ProgressBarCallback(trainer, total_timesteps),
        EnvMetricsCallback(),
        PeriodicCallback(trainer),
    ]


# -- metadata ---------------------------------------------------------------------------


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source checkout, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    try:
        return importlib.metadata.version("hpo-rl")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_metadata(
    config: TrainConfig,
    space: HyperparameterSpace,
    control: Mapping[str, Any],
    eval_summary: Mapping[str, Any] | None,
    training: Mapping[str, Any],
    command: str,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": FeatureExtractor.feature_names(space),
        "hparams": space.to_dicts(),
        "action": {"low": -1.0, "high": 1.0, "size": len(space), "mapping": ACTION_MAPPING},
        "control": dict(control),
        "net_arch": list(config.net_arch),
        "activation": "tanh",
        "observation_normalization": "clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)",
        "command": command,
        "seed": config.seed,
        "config": config.to_dict(),
        "package_version": package_version(),
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(),
        "training": dict(training),
        "heldout_evaluation": dict(eval_summary or {}),
        "algorithm": "stable-baselines3 PPO (MlpPolicy), deterministic action = clipped Gaussian mean",
    }


def export_bundle(
    path: Path,
    model: Any,
    vec_normalize: Any,
    config: TrainConfig,
    control: Mapping[str, Any],
    eval_summary: Mapping[str, Any] | None,
    training: Mapping[str, Any],
    command: str,
) -> Path:
    """Write the safe policy bundle of a trained PPO model."""
    space = HyperparameterSpace.from_names(config.hparams)
    contents = BundleContents(
        weights=actor_weights_from_sb3(model.policy),
        normalization=normalization_from_vecnormalize(vec_normalize),
        metadata=build_metadata(config, space, control, eval_summary, training, command),
    )
    return write_bundle(path, contents)


# -- the run ------------------------------------------------------------------------------


def make_model(config: TrainConfig, env: Any) -> Any:
    """A fresh SB3 PPO ("MlpPolicy", separate tanh actor/critic MLPs) for ``env``."""
    return PPO(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={
            "net_arch": {"pi": list(config.net_arch), "vf": list(config.net_arch)},
            "activation_fn": torch.nn.Tanh,
            "log_std_init": config.log_std_init,
        },
        seed=config.seed,
        device="cpu",
        verbose=0,
    )


def make_normalized_env(config: TrainConfig, raw_env: Any) -> Any:
    """``VecNormalize(VecMonitor(raw_env))`` as meta-training uses it."""
    return VecNormalize(
        VecMonitor(raw_env), norm_obs=True, norm_reward=config.norm_reward, gamma=config.gamma
    )


def load_run_config(
    run_dir: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The config of an existing run directory, with the few fields resume may change."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run directory written by `hpo-rl train` "
            f"(it holds {CONFIG_FILE} and {CHECKPOINT_DIR}/)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    config = TrainConfig.from_dict(data)
    overrides = dict(overrides or {})
    changed = sorted(
        k for k, v in overrides.items() if k not in RESUMABLE_FIELDS and getattr(config, k, v) != v
    )
    if changed:
        raise ValueError(
            f"cannot change {changed} when resuming {run_dir} (only {list(RESUMABLE_FIELDS)} may change); "
            "start a new run with another --out-dir instead"
        )
    config = apply_overrides(config, {k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS})
    return apply_overrides(config, {"out_dir": str(run_dir)})


def train(
    config: TrainConfig,
    resume_dir: str | os.PathLike[str] | None = None,
    *,
    command: str | None = None,
    resume_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Meta-train a tuning policy with PPO; returns the bundle directory.

    Args:
        config: the run's configuration (ignored when resuming: the run's own
            config.json is used, with ``resume_overrides`` for the fields in
            `RESUMABLE_FIELDS`).
        resume_dir: continue the run in this directory from its last checkpoint.
        command: the command line recorded in the bundle (default: ``sys.argv``).
        resume_overrides: changes allowed on resume (e.g. a larger total_timesteps).
    """
    command = command if command is not None else " ".join(sys.argv)
    if resume_dir is not None:
        config = load_run_config(resume_dir, resume_overrides)
        run_dir = Path(resume_dir)
    else:
        run_dir = Path(config.out_dir)
        if checkpoint_dirs(run_dir):
            raise ValueError(
                f"{run_dir} already holds checkpoints of a run; continue it with "
                f"`hpo-rl train --resume {run_dir}` or pick another --out-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_json() + "\n")
    _clean_staging(run_dir)
    torch.set_num_threads(config.torch_threads)

    checkpoint = latest_checkpoint(run_dir) if resume_dir is not None else None
    if resume_dir is not None and checkpoint is None:
        warnings.warn(
            f"{run_dir} has no complete checkpoint yet; training starts from scratch", stacklevel=2
        )
    state: dict[str, Any] = json.loads((checkpoint / STATE_FILE).read_text()) if checkpoint else {}
    progress: dict[str, Any] = {
        k: state[k]
        for k in ("last_checkpoint", "last_eval", "last_eval_result", "wall_time_s")
        if k in state
    }

    tracker = Tracker()
    tracker.start(
        {
            **config.to_dict(),
            "resumed_from": str(checkpoint) if checkpoint else None,
            "command": command,
        },
        mode=config.wandb_mode,
        project=config.wandb_project,
        dir=run_dir,
        name=config.wandb_name,
        job_type="meta-train",
    )
    trainer = _Trainer(config, run_dir, tracker, progress)
    env: Any = None
    try:
        set_random_seed(config.seed)
        raw_env = make_train_env(config)
        if checkpoint is not None:
            env = VecNormalize.load(str(checkpoint / VECNORMALIZE_FILE), VecMonitor(raw_env))
            env.training = True
            model = PPO.load(str(checkpoint / MODEL_FILE), env=env, device="cpu")
            _set_rng_state(state["rng"])
            _set_env_rng_state(env, state.get("env_rng"))
        else:
            env = make_normalized_env(config, raw_env)
            model = make_model(config, env)
        model.set_logger(Logger(folder=None, output_formats=[TrackerOutputFormat(tracker)]))
        remaining = config.total_timesteps - int(model.num_timesteps)
        start_steps = int(model.num_timesteps)
        started = time.monotonic()
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=make_callbacks(trainer, config.total_timesteps),
                log_interval=1,
                reset_num_timesteps=False,
            )
            model.logger.dump(model.num_timesteps)  # the last PPO update's train/* values
        elapsed = time.monotonic() - started
        trainer.maybe_checkpoint(model, env, force=True)
        eval_result = trainer.maybe_evaluate(model, env, force=True) or {}
        trainer.maybe_checkpoint(model, env, force=True)

        eval_summary = {k: v for k, v in eval_result.items() if k != "per_task"}
        eval_summary["per_task"] = eval_result.get("per_task", {})
        eval_summary["tasks"] = sorted(eval_summary["per_task"])
        eval_summary["seeds"] = list(config.eval_seeds)
        training = {
            "num_timesteps": int(model.num_timesteps),
            "wall_time_s": trainer.wall_time(),
            "steps_per_s_last_session": (int(model.num_timesteps) - start_steps) / elapsed
            if elapsed > 0
            else None,
            "resumed": checkpoint is not None,
            "torch_threads": config.torch_threads,
        }
        bundle_dir = export_bundle(
            run_dir / BUNDLE_DIR,
            model,
            env,
            config,
            control_info(config),
            eval_summary,
            training,
            command,
        )
        tracker.summary(
            {f"final/{k}": v for k, v in eval_summary.items() if isinstance(v, (int, float))}
        )
        tracker.log_artifact(
            bundle_dir, name="tuning-policy", type="model", metadata={"training": training}
        )
    finally:
        if env is not None:
            with contextlib.suppress(Exception):  # e.g. Ray actors already gone
                env.close()
        tracker.finish()
    return bundle_dir
