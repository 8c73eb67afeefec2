"""Meta-training: PPO across a distribution of training tasks, read top to bottom."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from agents.common.files import atomic_write_text
from agents.common.threads import configure_threads
from agents.common.tracking import RUN_ID_FILE, Tracker, persistent_run_id
from agents.common.validation import apply_overrides
from agents.common.vec_env_config import vec_env_kwargs_from_config
from agents.train.callbacks import (
    TrackerOutputFormat,
    WallClockBudgetReached,
    _Trainer,
    close_progress_bars,
    make_callbacks,
)
from agents.train.checkpoints import (
    BUNDLE_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    VECNORMALIZE_FILE,
    _clean_staging,
    _set_env_rng_state,
    _set_rng_state,
    checkpoint_dirs,
    latest_checkpoint,
)
from agents.train.config import TrainConfig, resolve_distribution
from agents.train.export import export_bundle
from agents.train.heldout import control_info
from agents.train.members import train_ensemble
from hpo_env import (
    make_vec_env,
)
from hpo_env.device import resolve_device
from hpo_env.errors import ConfigError, HpoRlError, RunDirectoryError

RESUMABLE_FIELDS = (
    "total_timesteps",
    "max_wall_time_s",
    "wandb_mode",
    "progress_bar",
    "wandb_name",
    "device",
    "member_workers",
)
"""Fields ``--resume`` may change; every other field must stay what config.json says."""


GPU_MIN_USEFUL_ENVS = 256
"""Below this many sub-envs a GPU meta-trains no faster than the CPU (measured on an H200)."""


def make_train_env(config: TrainConfig, seed: int | None = None) -> Any:
    """The raw (unwrapped) training VecEnv: batched local env or Ray workers."""
    if config.backend == "ray":
        from agents.common.ray_vec_env import make_ray_vec_env

        return make_ray_vec_env(config, seed=seed)
    device = resolve_device(config.device)
    if device.type == "cuda" and config.n_envs < GPU_MIN_USEFUL_ENVS:
        warnings.warn(
            f"n_envs={config.n_envs} on {device}: a batch this small is bound by kernel "
            f"launches, and meta-training ran 0.8-0.9x the speed of 2 CPU cores on an H200 at "
            f"32 envs; raise --n-envs (1,024 ran 12x) or use --device cpu (README, 'On a GPU')",
            stacklevel=2,
        )
    kwargs = {**vec_env_kwargs_from_config(config), "device": device}
    return make_vec_env(config.n_envs, seed=config.seed if seed is None else seed, **kwargs)


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
        raise RunDirectoryError(
            f"{path} not found: --resume needs a run directory written by `hpo-rl train` "
            f"(it holds {CONFIG_FILE} and {CHECKPOINT_DIR}/)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None
    config = TrainConfig.from_dict(data)
    overrides = dict(overrides or {})
    changed = sorted(
        k for k, v in overrides.items() if k not in RESUMABLE_FIELDS and getattr(config, k, v) != v
    )
    if changed:
        raise ConfigError(
            f"cannot change {changed} when resuming {run_dir} (only {list(RESUMABLE_FIELDS)} may change); "
            "start a new run with another --out-dir instead"
        )
    config = apply_overrides(config, {k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS})
    return apply_overrides(config, {"out_dir": str(run_dir)})


def check_runnable(config: TrainConfig, run_dir: Path) -> None:
    """Raise `ConfigError` for whatever would fail only once the run had started.

    `TrainConfig` checks values on their own; this checks them against this
    machine: the run directory's path, the device (a CUDA device must exist),
    the distribution's name and splits, and the Ray extra. `train` calls it
    before it writes anything, so a bad option leaves no run directory, no
    wandb id and no offline wandb run behind.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"--out-dir {str(run_dir)!r} exists and is not a directory; pick another --out-dir"
        )
    if config.backend == "ray":
        from agents.common.extras import require

        require("ray", extra="ray", purpose="hpo-rl train --backend ray")
    else:  # Ray workers resolve the device on their own machines
        resolve_device(config.device)
    for split in ("train", "heldout"):
        try:
            resolve_distribution(config, split)
        except HpoRlError:
            raise
        except (ValueError, TypeError, ImportError) as exc:
            raise ConfigError(
                f"--distribution {config.distribution!r} gives no {split!r} sampler: {exc}"
            ) from exc


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
    # Nothing is written (run directory, wandb id, offline run) before every option is known good.
    check_runnable(config, run_dir)
    if config.ensemble_size > 1:
        return train_ensemble(
            config,
            run_dir,
            train,
            resuming=resume_dir is not None,
            command=command,
            resume_overrides=resume_overrides,
        )
    if resume_dir is None:
        if checkpoint_dirs(run_dir):
            raise ConfigError(
                f"{run_dir} already holds checkpoints of a run; continue it with "
                f"`hpo-rl train --resume {run_dir}` or pick another --out-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        # A fresh run is a new wandb run: an id left by an earlier start that wrote no
        # checkpoint (a crash, Ctrl-C) belongs to that attempt; --resume keeps it.
        (run_dir / RUN_ID_FILE).unlink(missing_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_json() + "\n")
    _clean_staging(run_dir)
    configure_threads(config.torch_threads)

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
    # One wandb run per run directory: --resume (after a kill too) continues it.
    run_id = persistent_run_id(run_dir)
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
        id=run_id,
        resume="allow",
    )
    trainer = _Trainer(config, run_dir, tracker, progress)
    callbacks = make_callbacks(trainer, config.total_timesteps)
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
            # Stopped by the wall-clock budget: between rollouts, right after an update.
            with contextlib.suppress(WallClockBudgetReached):
                model.learn(
                    total_timesteps=remaining,
                    callback=callbacks,
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
            "stopped_by_wall_time": bool(trainer.progress.get("stopped_by_wall_time", False)),
            # The budget it was stopped by: the nearest boundary may come before it.
            "wall_time_budget_s": config.max_wall_time_s,
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
        close_progress_bars(callbacks)  # before anything the caller prints (e.g. on Ctrl-C)
        if env is not None:
            with contextlib.suppress(Exception):  # e.g. Ray actors already gone
                env.close()
        tracker.finish()
    return bundle_dir
