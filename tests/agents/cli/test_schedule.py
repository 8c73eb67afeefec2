"""``hpo-rl schedule``: policy vs constant vs cosine with warm-up on a transfer validation task,
explained in words, with a verdict that says when the policy lost."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.benchmark.transfer.loop import train_run
from agents.benchmark.transfer.methods import PolicyMethod
from agents.benchmark.transfer.suite import TEST_TASKS, VALIDATION_TASKS
from agents.cli import main
from agents.cli import schedule as schedule_cli
from agents.cli.schedule import ScheduleConfig, validation_task, verdict
from tests.agents.support.scheduler_fixtures import (
    one_torch_thread,  # noqa: F401  (autouse)
    random_tuning_policy,
)

FAST_TASK = "moons_mlp_adamw"
"""The validation split's cheapest run (800 updates on 600 two-feature examples)."""
ROW = re.compile(r"^  (tuning policy|constant rate|cosine with warm-up)\s+([0-9.eE+-]+)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    random_tuning_policy(seed=3).save(path)
    return str(path)


def run_schedule_command(bundle: str, out: Path, *extra: str) -> dict:
    """``hpo-rl schedule`` on the fast task: what it printed and returned."""
    results: list[dict] = []
    real = schedule_cli.run_schedule

    def keep(config: ScheduleConfig) -> dict:
        results.append(real(config))
        return results[-1]

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(schedule_cli, "run_schedule", keep)
        code = main(
            [
                *("schedule", "--policy", bundle, "--task", FAST_TASK, *extra),
                *("--out", str(out), "--wandb-mode", "disabled"),
            ]
        )
    return {"code": code, "text": stdout.getvalue(), "result": results[0] if results else None}


@pytest.fixture(scope="module")
def printed(bundle: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``hpo-rl schedule`` on the fast task: what it printed, returned and wrote."""
    out = tmp_path_factory.mktemp("schedule")
    return {**run_schedule_command(bundle, out), "out": out}


# -- the verdict (fast) ---------------------------------------------------------------


def test_verdict_says_plainly_when_the_policy_lost() -> None:
    text = verdict({"policy": 1.12, "constant": 1.2, "cosine_warmup": 1.0})
    assert text.startswith("the policy lost to cosine with warm-up by 12%")
    assert "beat the constant rate by 7.1%" in text
    assert text.endswith("on this run")


def test_verdict_when_the_policy_lost_to_both_and_when_it_beat_both() -> None:
    lost = verdict({"policy": 2.0, "constant": 1.0, "cosine_warmup": 1.6})
    assert lost == (
        "the policy lost to the constant rate by 100% and to cosine with warm-up by 25% on this run"
    )
    won = verdict({"policy": 1.0, "constant": 1.5, "cosine_warmup": 1.1})
    assert won == (
        "the policy beat the constant rate by 50% and cosine with warm-up by 10% on this run"
    )
    assert "lost" not in won


def test_verdict_ties_and_divergence() -> None:
    tied = verdict({"policy": 1.0, "constant": 1.0, "cosine_warmup": 0.5})
    assert "tied with the constant rate" in tied and "lost to cosine with warm-up by 100%" in tied
    diverged = verdict(
        {"policy": 100.0, "constant": 1.0, "cosine_warmup": 1.0},
        {"policy": True, "constant": False, "cosine_warmup": False},
    )
    assert diverged.startswith("the policy (which diverged) lost")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="seed"):
        ScheduleConfig(seed=-1)
    with pytest.raises(ValueError, match="val_every"):
        ScheduleConfig(val_every=-1)
    with pytest.raises(TypeError, match="wandb_mode"):
        ScheduleConfig(wandb_mode="sometimes")  # type: ignore[arg-type]
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="start_multiplier must be a finite number > 0"):
            ScheduleConfig(start_multiplier=bad)


def test_default_task_is_a_validation_task_from_a_typical_rate() -> None:
    task = validation_task(ScheduleConfig().task)
    assert task in VALIDATION_TASKS and task.split == "validation"
    assert task.start_regime == "typical"


def test_val_every_sets_the_cadence() -> None:
    task = validation_task(FAST_TASK)
    assert validation_task(FAST_TASK, None) == task
    assert validation_task(FAST_TASK, 0).val_every == task.n_updates  # only at the end
    assert validation_task(FAST_TASK, 7).val_every == 7
    assert validation_task(FAST_TASK, 10**6).val_every == task.n_updates


def test_test_split_unknown_and_old_task_names_are_user_errors(
    bundle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--policy", bundle, "--out", str(tmp_path), "--wandb-mode", "disabled"]
    assert main(["schedule", "--task", "digits_mlp_sgd_momentun", *common]) == 2
    assert "did you mean 'digits_mlp_sgd_momentum'" in capsys.readouterr().err
    assert main(["schedule", "--task", TEST_TASKS[0].name, *common]) == 2  # never for choosing
    assert "test split" in capsys.readouterr().err
    assert main(["schedule", "--task", "digits_mlp:heldout", *common]) == 2
    err = capsys.readouterr().err
    assert all(t.name in err for t in VALIDATION_TASKS)
    assert not list(tmp_path.iterdir())  # nothing written


# -- one real comparison (slow: three 800-update runs) --------------------------------


@pytest.mark.slow
def test_output_says_what_the_task_is_and_that_lower_is_better(printed: dict) -> None:
    assert printed["code"] == 0
    text = printed["text"]
    task = validation_task(FAST_TASK)
    first = text.splitlines()[0]
    for words in ("two-moons", "MLP", "AdamW", "0.03", "800 updates", "validation split"):
        assert words in first, first
    assert "final validation loss (cross-entropy), lower is better:" in text
    values = {m.group(1): float(m.group(2)) for m in map(ROW.match, text.splitlines()) if m}
    assert set(values) == {"tuning policy", "constant rate", "cosine with warm-up"}
    objectives = printed["result"]["objectives"]
    for label, name in (
        ("tuning policy", "policy"),
        ("constant rate", "constant"),
        ("cosine with warm-up", "cosine_warmup"),
    ):
        assert values[label] == pytest.approx(objectives[name], rel=1e-3)
    assert task.n_updates == 800
    assert (printed["out"] / "schedule.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in printed["out"].iterdir()) == ["schedule.png"]


@pytest.mark.slow
def test_verdict_is_last_and_agrees_with_the_numbers(printed: dict) -> None:
    last = printed["text"].strip().splitlines()[-1]
    assert last.startswith("verdict: the policy ")
    objectives = printed["result"]["objectives"]
    for name, label in (
        ("constant", "the constant rate"),
        ("cosine_warmup", "cosine with warm-up"),
    ):
        if objectives["policy"] > objectives[name]:
            assert f"lost to {label}" in last or f"and to {label}" in last
        elif objectives["policy"] < objectives[name]:
            assert f"{label} by" in last and "beat" in last
    assert "measured on CPU: " in printed["text"]


@pytest.mark.slow
def test_runs_share_the_start_and_the_policy_is_the_benchmarks(printed: dict, bundle: str) -> None:
    runs = printed["result"]["runs"]
    task = validation_task(FAST_TASK)
    assert len({run.first_val for run in runs.values()}) == 1  # same init, data and split
    assert set(runs["constant"].lrs) == {task.start_lr}
    cosine = runs["cosine_warmup"].lrs
    assert cosine[0] < task.start_lr and max(cosine) <= task.start_lr * (1 + 1e-9)
    assert cosine[-1] < 0.05 * task.start_lr  # annealed to ~0
    assert len(set(runs["policy"].lrs)) > 1
    for run in runs.values():
        assert run.val_steps[-1] == task.n_updates or run.diverged
    # The same run as the transfer benchmark's policy method (same process: bit-equal).
    benchmark = train_run(task, PolicyMethod(bundle), 0)
    assert benchmark.objective == runs["policy"].objective


@pytest.mark.slow
def test_start_multiplier_starts_all_three_runs_there(bundle: str, tmp_path: Path) -> None:
    """``--start-multiplier 30``: the robustness sweep's too-hot start, on one run."""
    done = run_schedule_command(bundle, tmp_path, "--start-multiplier", "30", "--val-every", "200")
    assert done["code"] == 0
    task = validation_task(FAST_TASK)
    runs = done["result"]["runs"]
    assert runs["constant"].lrs == pytest.approx([task.start_lr * 30] * len(runs["constant"].lrs))
    assert max(runs["cosine_warmup"].lrs) == pytest.approx(task.start_lr * 30, rel=1e-6)
    assert f"from the user's rate x 30 ({task.start_lr * 30:g})" in done["text"]
    assert len({run.first_val for run in runs.values()}) == 1


@pytest.mark.slow
def test_default_run_takes_well_under_a_minute(tmp_path: Path) -> None:
    """The command a newcomer types first: the shipped policy on the default task."""
    import time

    started = time.process_time()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["schedule", "--out", str(tmp_path), "--wandb-mode", "disabled"])
    cpu = time.process_time() - started
    assert code == 0
    assert "classification_mlp_adam" in stdout.getvalue()
    assert cpu < 45, f"{cpu:.0f} CPU-seconds"


@pytest.mark.slow
def test_script_runs_in_a_subprocess(bundle: str, tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(
        [
            sys.executable,
            "scripts/schedule.py",
            *("--policy", bundle, "--task", FAST_TASK, "--out", str(tmp_path)),
            *("--wandb-mode", "offline"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("verdict: the policy ")
    assert (tmp_path / "schedule.png").exists()
    assert (tmp_path / "wandb").is_dir()
