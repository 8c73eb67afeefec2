"""Meta-train an ensemble: one PPO run per training seed, one bundle acting on their mean.

A single PPO run is a lottery ticket (issue 26, lever 5): the same recipe with another
seed lands elsewhere. With ``TrainConfig.ensemble_size = n > 1``, ``hpo-rl train``
trains the recipe with seeds ``seed, seed + 1, ..., seed + n - 1``, each an ordinary
run directory (checkpoints, held-out evaluation, its own W&B run), one after the other,
then joins their bundles (`agents.policy.ensemble.write_ensemble`)::

    OUT_DIR/config.json             the ensemble's config (``--resume OUT_DIR`` reads it)
    OUT_DIR/members/seed<s>/        member runs, each resumable on its own
    OUT_DIR/bundle/                 the ensemble bundle (written last)

Resuming skips members whose bundle is complete and continues the others from their
last checkpoint, so a kill loses at most one member's last checkpoint interval.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agents.common.files import atomic_write_text
from agents.policy.bundle import METADATA_FILE
from agents.policy.ensemble import write_ensemble
from agents.train.checkpoints import BUNDLE_DIR, CONFIG_FILE, checkpoint_dirs
from agents.train.config import TrainConfig
from agents.train.export import git_revision, package_version
from hpo_env.errors import ConfigError

MEMBER_RUNS_DIR = "members"
"""The members' run directories under the ensemble's run directory (not the bundle's
``members/<j>`` folders, `agents.policy.ensemble.MEMBERS_DIR`)."""

TrainOne = Callable[..., Path]
"""`agents.train.trainer.train` (passed in: this module sits below the trainer)."""


def member_seeds(config: TrainConfig) -> list[int]:
    """The members' training seeds: ``seed, seed + 1, ...``, ``ensemble_size`` of them."""
    return [config.seed + k for k in range(config.ensemble_size)]


def member_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / MEMBER_RUNS_DIR / f"seed{seed}"


def member_config(config: TrainConfig, run_dir: Path, seed: int) -> TrainConfig:
    """One member's run: the recipe with this seed, alone, in its own directory."""
    return dataclasses.replace(
        config, seed=seed, ensemble_size=1, out_dir=str(member_dir(run_dir, seed))
    )


def member_finished(run_dir: Path, config: TrainConfig) -> bool:
    """Whether a member's bundle covers its budget (its decisions, or its wall-clock stop)."""
    meta = run_dir / BUNDLE_DIR / METADATA_FILE
    if not meta.is_file():
        return False
    try:
        training = json.loads(meta.read_text()).get("training", {})
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # a torn write: the member resumes and exports again
    if int(training.get("num_timesteps", 0)) >= config.total_timesteps:
        return True
    # Stopped by a budget at least this one's (a resume may raise it; a bundle from before
    # the budget was recorded stopped after its budget, so its wall time stands in).
    budget = config.max_wall_time_s
    stopped_at = training.get("wall_time_budget_s", training.get("wall_time_s", 0.0))
    return bool(training.get("stopped_by_wall_time")) and 0 < budget <= stopped_at


def train_ensemble(
    config: TrainConfig,
    run_dir: Path,
    train_one: TrainOne,
    *,
    resuming: bool,
    command: str,
    resume_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Train (or resume) every member of ``config`` in ``run_dir``; returns the ensemble bundle."""
    seeds = member_seeds(config)
    if not resuming:
        begun = [s for s in seeds if checkpoint_dirs(member_dir(run_dir, s))]
        if begun:
            raise ConfigError(
                f"{run_dir} already holds member runs (seeds {begun}); continue them with "
                f"`hpo-rl train --resume {run_dir}` or pick another --out-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_json() + "\n")
    runs = []  # (member config, resume?) of every member still to train
    for seed in seeds:
        one, path = member_config(config, run_dir, seed), member_dir(run_dir, seed)
        started = resuming and bool(checkpoint_dirs(path))
        if not (started and member_finished(path, one)):
            runs.append((one, started))
    trainer = _MemberTrainer(train_one, command, dict(resume_overrides or {}))
    workers = min(config.member_workers, len(runs), os.cpu_count() or 1)
    if config.backend == "ray":
        workers = 1  # members share this process's Ray session; Ray spreads each one's work
    if workers > 1:
        _train_side_by_side(runs, trainer, workers, config.progress_bar)
    else:
        for one, started in runs:
            if config.progress_bar:
                k = seeds.index(one.seed)
                print(f"ensemble member {k + 1}/{len(seeds)} (seed {one.seed})", file=sys.stderr)
            trainer((one, started))
    bundles = [member_dir(run_dir, s) / BUNDLE_DIR for s in seeds]
    metadata = {
        "command": command,
        "seed": config.seed,
        "config": config.to_dict(),
        "package_version": package_version(),
        "git_revision": git_revision(),
        "training": {"members": [_training(b) for b in bundles]},
    }
    return write_ensemble(run_dir / BUNDLE_DIR, bundles, extra_metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _MemberTrainer:
    """Trains (or resumes) one member: a picklable work item for worker processes."""

    train_one: TrainOne
    command: str
    resume_overrides: dict[str, Any]

    def __call__(self, run: tuple[TrainConfig, bool]) -> Path:
        one, started = run
        if started:
            return self.train_one(
                one, resume_dir=one.out_dir, command=self.command,
                resume_overrides=self.resume_overrides,
            )  # fmt: skip
        return self.train_one(one, command=self.command)


def _train_side_by_side(
    runs: list[tuple[TrainConfig, bool]], trainer: _MemberTrainer, workers: int, progress: bool
) -> None:
    """Members on ``workers`` processes; one line per finished member (their own progress
    bars would interleave, so they are off)."""
    from agents.benchmark.executor import ItemFailed, ProcessExecutor

    quiet = dataclasses.replace(
        trainer, resume_overrides={**trainer.resume_overrides, "progress_bar": False}
    )
    items = [(dataclasses.replace(one, progress_bar=False), started) for one, started in runs]
    seeds = [one.seed for one, _ in runs]
    if progress:
        print(f"ensemble: training seeds {seeds} on {workers} processes", file=sys.stderr)
    started_at = time.perf_counter()
    try:
        for index, _ in ProcessExecutor(workers, preload=MEMBER_PRELOAD).map_unordered(
            quiet, items
        ):
            if progress:
                elapsed = time.perf_counter() - started_at
                print(
                    f"ensemble: member seed {seeds[index]} done ({elapsed:.0f} s)", file=sys.stderr
                )
    except ItemFailed as failed:
        raise failed.error from None


MEMBER_PRELOAD = ("agents.train.trainer",)
"""What the members' fork server imports once (SB3, torch, the environment; no torch op)."""


def _training(bundle: Path) -> dict[str, Any]:
    meta = json.loads((bundle / METADATA_FILE).read_text())
    return {"seed": meta.get("seed"), **meta.get("training", {})}
