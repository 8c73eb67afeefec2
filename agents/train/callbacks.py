"""SB3 callbacks of meta-training, one job each: checkpoints, held-out evaluation, env metrics, progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from agents.common.files import atomic_write_text
from agents.common.tracking import Tracker
from agents.policy.bundle import json_safe
from agents.train.checkpoints import EVAL_LOG, save_checkpoint
from agents.train.config import TrainConfig
from agents.train.heldout import SB3PolicyView, evaluate_heldout, heldout_tasks
from hpo_env.protocol import Task


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
        self.space = config.space()
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
        view = SB3PolicyView(model, vec_normalize, self.space, self.config.feature_spec_version)
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


class WallClockBudgetReached(Exception):
    """Raised between rollouts once ``max_wall_time_s`` is spent; `train` catches it."""


class WallClockBudgetCallback(BaseCallback):
    """Stops learning at the rollout boundary nearest to ``max_wall_time_s``.

    At each rollout's start it raises `WallClockBudgetReached` (before any environment
    step) when stopping now ends nearer the budget than one more rollout and update
    would, judged by the last one's time: once ``elapsed + last_iteration / 2 >=
    budget``. Stopping at the first boundary *after* the budget overran it by up to a
    whole iteration, so a recipe with slow rollouts got more seconds than the rest
    (+60-80 s on 6 min in the ablation of 2026-12-07); now every recipe's run ends
    within half an iteration of the budget, on either side. The run still stops right
    after a PPO update, so ``--total-timesteps`` set to the decisions it reached
    reproduces it bit for bit (same seed, same CPU).
    """

    def __init__(self, trainer: _Trainer) -> None:
        super().__init__()
        self.trainer = trainer
        self._last_start: float | None = None

    def _on_rollout_start(self) -> None:
        now = self.trainer.wall_time()
        iteration = 0.0 if self._last_start is None else now - self._last_start
        self._last_start = now
        limit = self.trainer.config.max_wall_time_s
        if limit > 0 and self.model.num_timesteps > 0 and now + iteration / 2 >= limit:
            self.trainer.progress["stopped_by_wall_time"] = True
            raise WallClockBudgetReached

    def _on_step(self) -> bool:
        return True


class ProgressBarCallback(BaseCallback):
    """tqdm progress bar with ETA (SB3's own bar needs rich)."""

    def __init__(self, trainer: _Trainer, total_timesteps: int) -> None:
        super().__init__()
        self.trainer = trainer
        self.total_timesteps = total_timesteps
        self.bar: Any = None

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
        self.close()

    def close(self) -> None:
        """Draw the bar's last state and let go of it (idempotent). `train` calls it
        when learning stops early too (Ctrl-C), so no bar prints after the CLI's message."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def close_progress_bars(callbacks: list[BaseCallback]) -> None:
    """`ProgressBarCallback.close` on each progress bar among ``callbacks``."""
    for callback in callbacks:
        if isinstance(callback, ProgressBarCallback):
            callback.close()


def make_callbacks(trainer: _Trainer, total_timesteps: int) -> list[BaseCallback]:
    return [
        ProgressBarCallback(trainer, total_timesteps),
        EnvMetricsCallback(),
        PeriodicCallback(trainer),
        WallClockBudgetCallback(trainer),
    ]
