"""``hpo-rl schedule``: the policy next to a constant learning rate on a task's torch twin."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from agents.cli import schedule as schedule_cli
from agents.cli.schedule import ScheduleConfig, run_schedule
from tests.agents.support.scheduler_fixtures import (
    one_torch_thread,  # noqa: F401  (autouse)
    random_tuning_policy,
)

SUMMARY = re.compile(r"^policy_val=\S+ constant_val=\S+ ratio=\S+ plot=\S+$")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    random_tuning_policy(seed=3).save(path)
    return str(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpo-rl")
    schedule_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _cli_main():
    from agents.cli import main

    return main


def test_schedule_compares_policy_and_constant(bundle, tmp_path, capsys):
    args = _parser().parse_args(
        [
            "schedule",
            "--policy",
            bundle,
            "--task",
            "sinusoid_mlp:heldout",
            "--out",
            str(tmp_path),
            "--wandb-mode",
            "disabled",
        ]
    )
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert SUMMARY.match(line), line
    png = tmp_path / "schedule.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schedule.png"]


def test_runs_share_the_start_and_differ_by_the_schedule(bundle, tmp_path):
    result = run_schedule(
        ScheduleConfig(
            policy=bundle,
            task="digits_mlp:heldout",
            out=str(tmp_path),
            wandb_mode="disabled",
            val_every=0,
        )
    )
    tuned, constant = result["tuned"], result["constant"]
    assert tuned["train"][0] == constant["train"][0]  # same init, batch and start values
    assert len(set(constant["lr"])) == 1
    assert len(set(tuned["lr"])) > 1
    assert tuned["val_steps"] == [0, len(tuned["train"])]
    assert result["ratio"] == pytest.approx(result["policy_val"] / result["constant_val"])


def test_config_validation():
    with pytest.raises(ValueError, match="seed"):
        ScheduleConfig(seed=-1)
    with pytest.raises(TypeError, match="wandb_mode"):
        ScheduleConfig(wandb_mode="sometimes")  # type: ignore[arg-type]


def test_unknown_and_control_tasks_are_user_errors(bundle, tmp_path, capsys):
    main = _cli_main()
    code = main(
        [
            "schedule",
            "--policy",
            bundle,
            "--task",
            "digits_mpl",
            "--out",
            str(tmp_path),
            "--wandb-mode",
            "disabled",
        ]
    )
    assert code == 2
    assert "did you mean 'digits_mlp" in capsys.readouterr().err
    code = main(
        ["schedule", "--policy", bundle, "--task", "control_cartpole", "--wandb-mode", "disabled"]
    )
    assert code == 2
    assert "supervised task" in capsys.readouterr().err


@pytest.mark.slow
def test_script_runs_in_a_subprocess(bundle, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(
        [
            sys.executable,
            "scripts/schedule.py",
            "--policy",
            bundle,
            "--task",
            "sinusoid_mlp:heldout",
            "--out",
            str(tmp_path),
            "--wandb-mode",
            "offline",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert SUMMARY.match(out.stdout.strip().splitlines()[-1])
    assert (tmp_path / "schedule.png").exists()
    assert (tmp_path / "wandb").is_dir()
