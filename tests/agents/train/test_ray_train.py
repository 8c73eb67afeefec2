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


def _step_both(ray_env, local_env, n_envs: int, steps: int = 3) -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(ray_env.reset(), local_env.reset())
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (n_envs, *ray_env.action_space.shape)).astype(np.float32)
        obs_r, rew_r, done_r, _ = ray_env.step(actions)
        obs_l, rew_l, done_l, _ = local_env.step(actions)
        np.testing.assert_array_equal(obs_r, obs_l)
        np.testing.assert_array_equal(rew_r, rew_l)
        np.testing.assert_array_equal(done_r, done_l)


@pytest.mark.ray
@pytest.mark.slow
def test_default_recipe_levers_reach_ray_workers(ray_session) -> None:
    """The default preset's recipe (twin reward, feature version 3, task groups, the
    recipe distribution with its keywords) on one Ray worker steps exactly as locally."""
    config = get_preset(
        "default", backend="ray", ray_workers=1, n_envs=8, task_groups=4,
        entropy_off_share=0.5, control_start_lr=7e-4, seed=2,
    )  # fmt: skip
    assert config.paired_reward and config.feature_spec_version == 3
    ray_env = make_train_env(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    try:
        local_env = make_train_env(dataclasses.replace(config, backend="local"))
        assert local_env.engines[0].reward_config.paired
        _step_both(ray_env, local_env, config.n_envs)
        assert ray_env.get_attr("task") == local_env.get_attr("task")
    finally:
        torch.set_num_threads(threads)
        ray_env.close()


@pytest.mark.ray
@pytest.mark.slow
def test_task_groups_split_over_ray_workers_at_the_local_group_size(ray_session) -> None:
    config = get_preset("default", backend="ray", ray_workers=2, n_envs=8, task_groups=4)
    env = make_train_env(config)
    try:
        env.reset()
        tasks = env.get_attr("task")  # one list per worker, so a shared task stays one object
        # Each worker trains 2 of the 4 groups of 2 runs; the runs of a group share a task.
        assert [len({id(t) for t in tasks[w * 4 : (w + 1) * 4]}) for w in (0, 1)] == [2, 2]
        assert [tasks[i] is tasks[i + 1] for i in range(0, 8, 2)] == [True] * 4
    finally:
        env.close()


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
