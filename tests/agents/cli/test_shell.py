"""The ``hpo-rl`` shell: ``--version``, ``python -m agents``, a fast ``--help``
that imports no heavy library, quiet libraries, the result line last."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import build_parser, main, package_version, quiet_libraries

REPO = Path(__file__).resolve().parents[3]
VERDICT = re.compile(r"^verdict: the policy (lost to|beat|tied with) .* on this run")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hpo-rl {package_version()}"
    assert re.match(r"\d+\.\d+", package_version())


@pytest.mark.slow  # a fresh interpreter: ~1.5 s
def test_python_dash_m_agents_is_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "agents", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hpo-rl ")


@pytest.mark.slow  # a fresh interpreter: ~1.5 s
def test_help_imports_no_heavy_library():
    code = (
        "import sys; from agents.cli import build_parser; "
        "build_parser(['--help']).format_help(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'wandb', 'ray', 'stable_baselines3', 'matplotlib', 'sklearn'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command_and_schedule_has_no_preset():
    listed = build_parser(["--help"]).format_help()
    assert all(name in listed for name in ("train", "schedule", "benchmark", "bench"))
    sub = build_parser(["schedule", "--help"])._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = " ".join(sub["schedule"].format_help().split())  # the help wraps where it likes
    assert "preset" not in text.lower() and "(default: 'classification_mlp_adam')" in text
    assert "--verbose" in text


def test_wandb_mode_defaults_to_offline_everywhere():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    from agents.cli.schedule import ScheduleConfig
    from agents.train.config import PRESETS

    assert sub["benchmark"].get_default("wandb_mode") == "offline"
    assert ScheduleConfig().wandb_mode == "offline"
    assert all(p.wandb_mode == "offline" for p in PRESETS.values())


def test_quiet_unless_verbose(monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.delenv("HPO_RL_QUIET", raising=False)
    quiet_libraries(verbose=True)
    assert "WANDB_SILENT" not in os.environ and "HPO_RL_QUIET" not in os.environ
    quiet_libraries(verbose=False)
    assert os.environ["WANDB_SILENT"] == "true" and os.environ["HPO_RL_QUIET"] == "1"
    monkeypatch.setenv("WANDB_SILENT", "false")  # an explicit choice wins
    quiet_libraries(verbose=False)
    assert os.environ["WANDB_SILENT"] == "false"


@pytest.mark.slow
def test_schedule_prints_its_result_last(tmp_path):
    from tests.agents.support.scheduler_fixtures import random_tuning_policy

    bundle = random_tuning_policy(seed=3).save(tmp_path / "bundle")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents",
            "schedule",
            "--policy",
            str(bundle),
            "--task",
            "moons_mlp_adamw",
            "--out",
            str(tmp_path / "out"),
        ],  # offline W&B by default, no WANDB_SILENT in the environment
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env=_env(
            WANDB_DIR=str(tmp_path),
            WANDB_CACHE_DIR=str(tmp_path / "c"),
            WANDB_CONFIG_DIR=str(tmp_path / "cfg"),
            WANDB_DATA_DIR=str(tmp_path / "d"),
        ),
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert VERDICT.match(lines[-1]), out.stdout[-3000:]
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))
