"""One wandb run per training run directory, across a SIGKILL and ``--resume``;
a deployed scheduler's rows and plot in a real offline run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch

from agents.common.tracking import RUN_ID_FILE, Tracker, persistent_run_id
from tests.agents.common.test_tracking import offline_run_bytes, wandb_env  # noqa: F401  (fixture)


def test_run_id_is_made_once_per_run_directory(tmp_path: Path):
    first = persistent_run_id(tmp_path)
    assert first.isalnum() and len(first) == 8
    assert persistent_run_id(tmp_path) == first
    assert (tmp_path / RUN_ID_FILE).read_text().strip() == first
    (tmp_path / RUN_ID_FILE).write_text("not an id!\n")  # damaged: a fresh one replaces it
    assert persistent_run_id(tmp_path) != first


def _offline_ids(root: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in root.glob("wandb/offline-run-*"))


@pytest.mark.slow
def test_offline_resume_continues_the_same_run(wandb_env: Path):  # noqa: F811
    run_id = persistent_run_id(wandb_env)
    for i in range(2):
        tracker = Tracker().start(
            {"seed": 0}, mode="offline", dir=wandb_env, id=run_id, resume="allow"
        )
        assert tracker.mode == "offline" and tracker.run.id == run_id
        tracker.log({"x": float(i)}, step=i)
        tracker.finish()
    assert _offline_ids(wandb_env) == [run_id, run_id]


@pytest.mark.slow
def test_train_kill_and_resume_keep_one_wandb_run(tmp_path: Path):
    from agents.train.checkpoints import checkpoint_dirs
    from tests.agents.train.test_trainer import REPO, child_env, cli_prefix
    from tests.agents.support.train_distribution import TINY_DISTRIBUTION

    out = tmp_path / "run"
    env = {**child_env(tmp_path), "WANDB_MODE": "offline"}
    args = ["--preset", "smoke", "--out-dir", str(out), "--wandb-mode", "offline"]
    proc = subprocess.Popen(
        [*cli_prefix(), *args, "--total-timesteps", "4096", "--distribution", TINY_DISTRIBUTION],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint_dirs(out):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()  # SIGKILL: wandb gets no chance to finish
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = (out / RUN_ID_FILE).read_text().strip()
    resumed = subprocess.run(
        [*cli_prefix(), "--resume", str(out), "--progress-bar", "false"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1].startswith("policy bundle written to")
    assert _offline_ids(out) == [run_id, run_id]


@pytest.mark.slow
def test_scheduler_rows_and_plot_reach_an_offline_run(wandb_env: Path):  # noqa: F811
    from agents.deploy.scheduler import TuningScheduler
    from tests.agents.support.scheduler_fixtures import MlpStandInPolicy

    tracker = Tracker().start({}, mode="offline", dir=wandb_env)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = {"n": 0}
    sched = TuningScheduler(
        MlpStandInPolicy(), opt, 8, 4, wandb_run=tracker.run, step_fn=lambda: step["n"]
    )
    for i in range(8):
        tracker.log({"user/loss_at_step": float(i)}, step=i)  # the user's own rows, from 0
        loss = model(torch.ones(2, 3)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step["n"] = i
        sched.step(loss)
    tracker.finish()
    data = offline_run_bytes(wandb_env, (b"schedule/learning_rate_plot", b"user/loss_at_step"))
    assert b"schedule/learning_rate_plot" in data and b"schedule/train_loss" in data
