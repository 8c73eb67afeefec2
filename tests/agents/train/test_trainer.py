"""Meta-training end to end: the smoke preset through the CLI, kill and resume,
atomic checkpoints, determinism, tracking during training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from agents.common.tracking import Tracker, TrackingWarning
from agents.policy.bundle import read_bundle
from agents.policy.tuning_policy import TuningPolicy
from agents.train import checkpoints as train_mod
from agents.train.checkpoints import (
    CHECKPOINT_DIR,
    checkpoint_dirs,
    checkpoint_is_valid,
    save_checkpoint,
)
from agents.train.config import get_preset
from agents.train.trainer import (
    load_run_config,
    make_model,
    make_normalized_env,
    make_train_env,
    train,
)
from tests.agents.support.train_distribution import TINY_DISTRIBUTION

REPO = Path(__file__).resolve().parents[3]


def cli_prefix() -> list[str]:
    """The ``hpo-rl train`` command line, as a user runs it."""
    return [sys.executable, "-m", "agents.cli", "train"]


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WANDB_SILENT="true",
        WANDB_MODE="disabled",
        WANDB_DIR=str(tmp_path),
        WANDB_CACHE_DIR=str(tmp_path / "cache"),
        WANDB_CONFIG_DIR=str(tmp_path / "config"),
        WANDB_DATA_DIR=str(tmp_path / "data"),
        HPO_RL_TRACEBACK="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def tiny(out_dir: Path, **overrides):
    values = {
        "distribution": TINY_DISTRIBUTION,
        "out_dir": str(out_dir),
        "wandb_mode": "disabled",
        "progress_bar": False,
    }
    values.update(overrides)
    return get_preset("smoke", **values)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_digests(run_dir: Path) -> dict[str, dict[str, str]]:
    return {c.name: {f.name: digest(f) for f in c.iterdir()} for c in checkpoint_dirs(run_dir)}


# -- fast ---------------------------------------------------------------------------


def test_resume_refuses_to_change_the_run(tmp_path: Path):
    config = tiny(tmp_path)
    (tmp_path / "config.json").write_text(config.to_json())
    assert load_run_config(tmp_path, {"total_timesteps": 4096}).total_timesteps == 4096
    with pytest.raises(ValueError, match=r"cannot change \['n_envs'\]"):
        load_run_config(tmp_path, {"n_envs": 2})
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_run_config(tmp_path / "elsewhere")


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path: Path):
    (tmp_path / CHECKPOINT_DIR / "step_000000000128").mkdir(parents=True)
    with pytest.raises(ValueError, match="--resume"):
        train(tiny(tmp_path))


def test_checkpoint_crash_mid_write_keeps_older_checkpoints(tmp_path: Path, monkeypatch):
    config = tiny(tmp_path, n_envs=2, n_steps=8, batch_size=16)
    env = make_normalized_env(config, make_train_env(config))
    model = make_model(config, env)
    model.num_timesteps = 16
    first = save_checkpoint(tmp_path, model, env, {"last_checkpoint": 16}, keep=3)
    before = checkpoint_digests(tmp_path)

    real_replace = os.replace

    def crash_on_rename(src, dst):
        if Path(dst).name.startswith("step_"):  # the final, atomic rename of the checkpoint
            raise OSError("killed before the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(train_mod.os, "replace", crash_on_rename)
    model.num_timesteps = 32
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(tmp_path, model, env, {"last_checkpoint": 32}, keep=1)
    monkeypatch.setattr(train_mod.os, "replace", real_replace)
    assert checkpoint_dirs(tmp_path) == [first] and checkpoint_is_valid(first)
    assert checkpoint_digests(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == [first.name]


# -- slow -----------------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_preset_cli_end_to_end(tmp_path: Path):
    out = tmp_path / "run"
    started = time.monotonic()
    proc = subprocess.run(
        [*cli_prefix(), "--preset", "smoke", "--out-dir", str(out), "--wandb-mode", "disabled"],
        cwd=REPO,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy = TuningPolicy.load(out / "bundle")
    meta = policy.metadata
    assert meta["training"]["num_timesteps"] >= 512
    assert meta["config"]["distribution"] == "default"
    assert 0.0 <= meta["heldout_evaluation"]["win_rate"] <= 1.0
    assert meta["control"]["decisions_per_run"] >= 1
    assert "--preset smoke" in meta["command"]
    assert json.loads((out / "config.json").read_text())["n_envs"] == 8
    print(f"smoke preset wall time: {wall:.1f} s (rough: shared machine)")


@pytest.mark.slow
def test_kill_and_resume(tmp_path: Path):
    out = tmp_path / "run"
    env = child_env(tmp_path)
    # The tiny distribution keeps this fast; the end-to-end test covers the real one.
    cmd = [*cli_prefix(), "--preset", "smoke", "--out-dir", str(out), "--wandb-mode", "disabled"]
    proc = subprocess.Popen(
        [*cmd, "--total-timesteps", "4096", "--distribution", TINY_DISTRIBUTION],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint_dirs(out):
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "bundle" / "metadata.json").exists(), "run finished before the kill"
    before = checkpoint_digests(out)
    assert before and all(checkpoint_is_valid(c) for c in checkpoint_dirs(out))

    resumed = subprocess.run(
        [*cli_prefix(), "--resume", str(out), "--progress-bar", "false"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    contents = read_bundle(out / "bundle")
    assert contents.metadata["training"]["num_timesteps"] >= 4096
    assert contents.metadata["training"]["resumed"] is True
    after = checkpoint_digests(out)
    for name, files in before.items():  # kept checkpoints are byte-identical
        if name in after:
            assert after[name] == files
    assert all(checkpoint_is_valid(c) for c in checkpoint_dirs(out))
    last = json.loads((checkpoint_dirs(out)[-1] / "state.json").read_text())
    assert last["num_timesteps"] >= 4096


@pytest.mark.slow
def test_same_seed_gives_identical_weights(tmp_path: Path):
    first = train(tiny(tmp_path / "a", seed=5))
    second = train(tiny(tmp_path / "b", seed=5))
    other = train(tiny(tmp_path / "c", seed=6))
    assert digest(first / "policy.safetensors") == digest(second / "policy.safetensors")
    assert digest(first / "policy.safetensors") != digest(other / "policy.safetensors")
    assert json.loads((first / "normalization.json").read_text()) == json.loads(
        (second / "normalization.json").read_text()
    )


@pytest.fixture
def wandb_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def offline_run_bytes(run_dir: Path, needles: tuple[bytes, ...], timeout: float = 30.0) -> bytes:
    """The offline wandb transaction log once it holds ``needles`` (wandb-core may
    still be flushing a later run of the same process after finish())."""
    deadline = time.monotonic() + timeout
    while True:
        files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        data = files[0].read_bytes() if len(files) == 1 else b""
        if all(n in data for n in needles) or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


@pytest.mark.slow
def test_offline_tracking_records_metrics_and_bundle_artifact(wandb_dirs: Path):
    out = wandb_dirs / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        train(tiny(out, wandb_mode="offline"))
    needles = (
        b"train/value_loss",
        b"train/approx_kl",
        b"rollout/ep_rew_mean",
        b"env/log10_learning_rate_mean",
        b"env/divergence_rate",
        b"eval/win_rate",
        b"tuning-policy",
        b"policy.safetensors",
        b"total_timesteps",
    )
    data = offline_run_bytes(out, needles)
    missing = [n for n in needles if n not in data]
    assert not missing


@pytest.mark.slow
def test_training_survives_wandb_faults(wandb_dirs: Path, monkeypatch: pytest.MonkeyPatch):
    class ExplodingRun:
        dir = str(wandb_dirs / "files")
        config = summary = None

        def log(self, *args, **kwargs):
            raise OSError("No space left on device")

        def log_artifact(self, *args, **kwargs):
            raise OSError("No space left on device")

        def finish(self, *args, **kwargs):
            pass

    def fake_init(self, mode, *args):
        self.run = ExplodingRun()

    # Online with no key or server: falls back to offline, whose runs then fail on every call.
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(Tracker, "_init", fake_init)
    with pytest.warns(TrackingWarning) as caught:
        bundle = train(tiny(wandb_dirs / "run", wandb_mode="online"))
    TuningPolicy.load(bundle)
    assert len([w for w in caught if issubclass(w.category, TrackingWarning)]) == 1


@pytest.mark.slow
def test_resume_without_checkpoint_starts_from_scratch(tmp_path: Path):
    config = tiny(tmp_path, total_timesteps=256)
    (tmp_path / "config.json").write_text(config.to_json())
    with pytest.warns(UserWarning, match="no complete checkpoint"):
        bundle = train(config, resume_dir=tmp_path)
    assert read_bundle(bundle).metadata["training"]["num_timesteps"] >= 256


@pytest.mark.slow
@pytest.mark.ray
# The first run's actors may still be releasing their CPUs when the resume starts.
@pytest.mark.filterwarnings("ignore:.*free CPUs")
def test_ray_backend_trains_and_resumes(tmp_path: Path, ray_session):
    config = tiny(tmp_path / "run", backend="ray", ray_workers=2, total_timesteps=256)
    bundle = train(config)
    meta = read_bundle(bundle).metadata
    assert meta["config"]["backend"] == "ray" and meta["training"]["num_timesteps"] >= 256
    state = json.loads((checkpoint_dirs(tmp_path / "run")[-1] / "state.json").read_text())
    assert len(state["env_rng"]["workers"]) == 2
    bundle = train(config, resume_dir=tmp_path / "run", resume_overrides={"total_timesteps": 512})
    assert read_bundle(bundle).metadata["training"]["num_timesteps"] >= 512


def test_wall_clock_budget_stops_at_a_rollout_boundary(tmp_path: Path):
    # A budget far below one rollout's time: one rollout and its update, then stop.
    config = tiny(tmp_path, total_timesteps=100_000, max_wall_time_s=1e-3)
    bundle = train(config)
    training = read_bundle(bundle).metadata["training"]
    rollout = config.n_envs * config.n_steps
    assert training["stopped_by_wall_time"] is True
    # The first rollout is collected and learned from; the stop comes before the next one.
    assert training["num_timesteps"] == rollout
    # The same run with that many decisions and no budget gives the same policy, bit for bit.
    twin = train(tiny(tmp_path / "twin", total_timesteps=rollout))
    assert digest(bundle / "policy.safetensors") == digest(twin / "policy.safetensors")
    assert (bundle / "normalization.json").read_text() == (twin / "normalization.json").read_text()
    with pytest.raises(ValueError, match="max_wall_time_s"):
        tiny(tmp_path, max_wall_time_s=-1.0)
    # Resuming may raise the budget (a field resume can change).
    assert load_run_config(tmp_path, {"max_wall_time_s": 60.0}).max_wall_time_s == 60.0


class _ScriptedTrainer:
    """A trainer whose wall clock reads the given times, one per rollout start."""

    def __init__(self, budget_s: float, times: list[float]) -> None:
        self.config = type("Config", (), {"max_wall_time_s": budget_s})()
        self.progress: dict = {}
        self._times = iter(times)

    def wall_time(self) -> float:
        return next(self._times)


def _rollouts_before_stop(budget_s: float, starts: list[float]) -> int:
    from types import SimpleNamespace

    from agents.train.callbacks import WallClockBudgetCallback, WallClockBudgetReached

    trainer = _ScriptedTrainer(budget_s, starts)
    callback = WallClockBudgetCallback(trainer)  # type: ignore[arg-type]
    callback.model = SimpleNamespace(num_timesteps=0)
    for n, _ in enumerate(starts):
        try:
            callback.on_rollout_start()
        except WallClockBudgetReached:
            assert trainer.progress["stopped_by_wall_time"] is True
            return n
        callback.model.num_timesteps += 64
    return len(starts)


@pytest.mark.parametrize(
    ("starts", "rollouts"),
    [
        # 30 s iterations, 100 s budget: stop at 90 (10 s short), not 120 (20 s over).
        ([0.0, 30.0, 60.0, 90.0, 120.0], 3),
        # 70 s iterations: stop at 70 (30 s short) rather than 140 (40 s over).
        ([0.0, 70.0, 140.0], 1),
        # 45 s iterations: one more would end at 135 (35 s over): stop at 90.
        ([0.0, 45.0, 90.0, 135.0], 2),
        # 12 s iterations: stop at 96 (4 s short), not 108 (8 s over).
        ([0.0, 12.0, 24.0, 36.0, 48.0, 60.0, 72.0, 84.0, 96.0, 108.0], 8),
    ],
)
def test_wall_clock_budget_stops_at_the_rollout_boundary_nearest_the_budget(starts, rollouts):
    assert _rollouts_before_stop(100.0, starts) == rollouts


def test_wall_clock_budget_never_stops_before_the_first_update_or_without_a_budget():
    # Past the budget at the first rollout's start (a long set-up): one rollout still runs.
    assert _rollouts_before_stop(10.0, [50.0, 60.0]) == 1
    assert _rollouts_before_stop(0.0, [0.0, 1e6, 2e6]) == 3  # 0 = no limit
