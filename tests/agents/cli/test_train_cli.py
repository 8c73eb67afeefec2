"""``hpo-rl train``: bad options fail before any side effect; Ctrl-C names the resume command."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents.cli import main
from agents.common.tracking import RUN_ID_FILE
from agents.train.checkpoints import checkpoint_dirs
from agents.train.config import get_preset
from agents.train.trainer import train
from tests.agents.support.train_distribution import TINY_DISTRIBUTION

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no CUDA, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wandb's own directories in tmp_path, so a created run would show up there."""
    home = tmp_path / "wandb_home"
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return home


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def test_cuda_without_cuda_fails_before_the_out_dir_exists(
    tmp_path: Path, no_cuda: None, wandb_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            *("train", "--preset", "smoke", "--device", "cuda"),
            *("--out-dir", str(out), "--wandb-mode", "offline"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "cpu" in err
    assert not out.exists(), _files_under(out)  # no out-dir, no wandb_run_id, no offline run
    assert _files_under(wandb_home) == []


def test_a_cuda_index_that_is_missing_fails_before_the_out_dir_exists(
    tmp_path: Path, no_cuda: None
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="CUDA"):
        train(get_preset("smoke", out_dir=str(out), device="cuda:1", wandb_mode="disabled"))
    assert not out.exists()


def test_unknown_distribution_fails_before_the_out_dir_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            *("train", "--preset", "smoke", "--distribution", "defualt"),
            *("--out-dir", str(out), "--wandb-mode", "disabled"),
        ]
    )
    assert code == 2
    assert "defualt" in capsys.readouterr().err
    assert not out.exists(), _files_under(out)


def test_out_dir_that_is_a_file_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.write_text("not a directory")
    code = main(["train", "--preset", "smoke", "--out-dir", str(out), "--wandb-mode", "disabled"])
    assert code == 2
    assert "not a directory" in capsys.readouterr().err
    assert out.read_text() == "not a directory"


def test_resume_with_cuda_without_cuda_touches_nothing(
    tmp_path: Path, no_cuda: None, wandb_home: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = get_preset("smoke", out_dir=str(run_dir), wandb_mode="offline")
    (run_dir / "config.json").write_text(config.to_json())
    (run_dir / "checkpoints" / ".staging-123").mkdir(parents=True)  # left by a kill
    before = _files_under(run_dir)
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(config, resume_dir=run_dir, resume_overrides={"device": "cuda"})
    assert _files_under(run_dir) == before
    assert not (run_dir / RUN_ID_FILE).exists()
    assert _files_under(wandb_home) == []


# -- Ctrl-C ---------------------------------------------------------------------------


def _child_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_SILENT="true",
        WANDB_DIR=str(tmp_path / "wandb_home"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
        WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"),
        WANDB_DATA_DIR=str(tmp_path / "wandb_data"),
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env.pop("HPO_RL_TRACEBACK", None)
    return env


@pytest.mark.slow
def test_ctrl_c_names_the_resume_command_last(tmp_path: Path) -> None:
    out = tmp_path / "my run"  # a space: the printed command must still be pasteable
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "agents.cli", "train", "--preset", "smoke"),
            *("--out-dir", str(out), "--total-timesteps", "1000000"),
            *("--distribution", TINY_DISTRIBUTION, "--wandb-mode", "disabled"),
        ],
        cwd=REPO,
        env=_child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not checkpoint_dirs(out):  # training (and its progress bar) is under way
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("hpo-rl train: interrupted"), stderr[-3000:]
    assert f"hpo-rl train --resume {shlex.quote(str(out))}" in last
    assert "Traceback" not in stderr
    assert "policy bundle written" not in stdout


def test_a_fresh_run_does_not_reuse_an_earlier_attempts_wandb_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.train.trainer as trainer_mod

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_ID_FILE).write_text("deadbeef\n")  # left by a start that wrote no checkpoint

    class _Stop(Exception):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        raise _Stop

    monkeypatch.setattr(trainer_mod, "make_train_env", stop)
    with pytest.raises(_Stop):
        train(get_preset("smoke", out_dir=str(run_dir), wandb_mode="disabled"))
    assert (run_dir / RUN_ID_FILE).read_text().strip() != "deadbeef"
