"""The trainer on the Ray backend: same environments as local, and a smoke run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("ray")

from agents.train.config import get_preset
from agents.train.trainer import make_train_env


@pytest.mark.ray
@pytest.mark.slow
def test_trainer_ray_env_equals_local_env(ray_session) -> None:
    """``backend="ray"`` with one worker steps the real task distribution exactly as
    the local backend does (same tasks, runs, observations and rewards)."""
    config = get_preset("smoke", backend="ray", ray_workers=1, n_envs=4, seed=3)
    ray_env = make_train_env(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)  # as the workers run
    try:
        local_env = make_train_env(dataclasses.replace(config, backend="local"))
        rng = np.random.default_rng(0)
        np.testing.assert_array_equal(ray_env.reset(), local_env.reset())
        assert ray_env.get_attr("task")[0].name == local_env.get_attr("task")[0].name
        for _ in range(3):
            actions = rng.uniform(-1, 1, (4, *ray_env.action_space.shape)).astype(np.float32)
            obs_r, rew_r, done_r, _ = ray_env.step(actions)
            obs_l, rew_l, done_l, _ = local_env.step(actions)
            np.testing.assert_array_equal(obs_r, obs_l)
            np.testing.assert_array_equal(rew_r, rew_l)
            np.testing.assert_array_equal(done_r, done_l)
    finally:
        torch.set_num_threads(threads)
        ray_env.close()


@pytest.mark.ray
@pytest.mark.slow
def test_train_smoke_on_ray_backend(ray_session, tmp_path) -> None:
    """``hpo-rl train --backend ray --preset smoke`` end to end in a subprocess that
    joins this session's Ray (so no second Ray starts on the machine)."""
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "train",
        "--preset",
        "smoke",
        "--backend",
        "ray",
        "--ray-address",
        address,
        "--ray-workers",
        "2",
        "--out-dir",
        str(tmp_path / "run"),
        "--wandb-mode",
        "disabled",
        "--progress-bar",
        "false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "bundle").is_dir() and any((run / "checkpoints").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "ray" and config["ray_workers"] == 2
