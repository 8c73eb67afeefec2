"""`run_transfer` end to end on tiny tasks: files written, resume cache, CLI, config errors."""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import pytest

from agents.benchmark.transfer import methods
from agents.benchmark.transfer.protocol import TransferConfig, run_transfer
from agents.benchmark.transfer.suite import TaskSpec
from hpo_env.errors import ConfigError

SMALL = dict(grid_multipliers=(0.1, 1.0, 10.0), sweep_multipliers=(0.1, 1.0, 10.0), progress=False)


def _tiny_run(tiny_task: TaskSpec, out: Path | None, **overrides: object) -> dict:
    config = TransferConfig(
        split="validation", n_seeds=2, out_dir=str(out) if out else None, **{**SMALL, **overrides}
    )  # type: ignore[arg-type]
    return run_transfer(
        config,
        baselines=[methods.Constant(), methods.CosineWarmup()],
        tasks=[tiny_task],
        stream=io.StringIO(),
    )


@pytest.mark.slow  # 14 tiny runs and five figures: seconds
def test_report_files_and_summary(tiny_task: TaskSpec, tmp_path: Path) -> None:
    result = _tiny_run(tiny_task, tmp_path)
    names = set(result["files"])
    assert {
        "results.json",
        "results.md",
        "win_tie_loss.png",
        "iqm_ratios.png",
        "robustness.png",
    } <= names
    assert "curves_tiny_iris.png" in names
    for path in result["files"].values():
        assert Path(path).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    summary = saved["summary"]
    assert set(summary["vs"]) == {"constant", "cosine_warmup", "oracle"}
    for row in summary["vs"].values():
        assert row["wins"] + row["ties"] + row["losses"] == row["n"] == 2
    assert summary["vs"]["oracle"]["compute_multiple"] == 3
    assert summary["per_task"][0]["task"] == "tiny_iris"
    assert set(summary["robustness"]["policy"]["by_multiplier"]) == {"0.1", "1", "10"}
    assert summary["targets"] and all(t["status"] in ("met", "NOT met") for t in summary["targets"])
    markdown = (tmp_path / "results.md").read_text()
    assert "worst first" in markdown and "## Targets" in markdown


@pytest.mark.slow  # 14 tiny runs: a few seconds
def test_oracle_is_the_best_grid_point(tiny_task: TaskSpec) -> None:
    result = _tiny_run(tiny_task, None)
    runs = {label: by_task["tiny_iris"] for label, by_task in result["objectives"].items()}
    # One oracle, chosen per task (`agents.benchmark.core.choose_oracle`): the grid point
    # with the lowest mean log objective over the seeds, used on every seed.
    grid = ("constant@x0.1", "constant", "constant@x10")
    best = min(grid, key=lambda g: sum(math.log(max(v, 1e-3)) for v in runs[g]))
    oracle = [max(runs[best][i], 1e-3) for i in range(2)]
    ratios = sorted(max(p, 1e-3) / o for p, o in zip(runs["policy"], oracle))
    assert result["summary"]["vs"]["oracle"]["median_ratio"] == pytest.approx(sum(ratios) / 2)
    assert result["summary"]["median_ratio_to_oracle"]["oracle"] == 1.0
    assert result["summary"]["per_task"][0]["oracle_label"] == best


@pytest.mark.slow  # 14 tiny runs, twice: seconds
def test_rerun_reuses_the_cache(tiny_task: TaskSpec, tmp_path: Path) -> None:
    first = _tiny_run(tiny_task, tmp_path)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    with open(tmp_path / "runs.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a line cut short by a kill is skipped
    again = _tiny_run(tiny_task, tmp_path)
    assert again["objectives"] == first["objectives"]
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(lines) + 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"split": "train"}, "unknown split 'train'"),
        ({"n_seeds": 0}, "--seeds 5"),
        ({"grid_multipliers": (0.1, 10.0)}, "must contain 1.0"),
        ({"robustness_factor": 0.5}, "robustness_factor"),
        ({"tasks": ("wine_mlp_rmsprop",)}, "--split test"),
    ],
)
def test_bad_config_names_the_fix(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TransferConfig(**{"split": "validation", **overrides}).task_specs()  # type: ignore[arg-type]


def test_baselines_need_a_constant(tiny_task: TaskSpec) -> None:
    with pytest.raises(ConfigError, match="including 'constant'"):
        run_transfer(
            TransferConfig(split="validation", **SMALL),
            baselines=[methods.CosineWarmup()],
            tasks=[tiny_task],
        )  # type: ignore[arg-type]


def test_cli_parses_into_a_config() -> None:
    from agents.cli import transfer

    parser = argparse.ArgumentParser()
    transfer.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "transfer",
            "--split",
            "validation",
            "--quick",
            "--tasks",
            "moons_mlp_adamw",
            "--no-progress",
        ]
    )
    config = transfer.config_from_args(args)
    assert config.split == "validation" and config.quick and config.n_seeds == 2
    assert config.tasks == ("moons_mlp_adamw",) and not config.progress and not args.rl
    assert config.out_dir == "runs/transfer-validation-quick"
    assert [t.n_updates for t in config.task_specs()] == [150]
    with pytest.raises(SystemExit):
        parser.parse_args(["transfer", "--split", "train"])


@pytest.mark.slow  # the real --quick command: about a minute on one idle core
def test_quick_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli import transfer

    parser = argparse.ArgumentParser()
    transfer.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["transfer", "--split", "test", "--quick", "--no-progress", "--out", str(tmp_path)]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "strict win rate vs constant" in printed and "Per task, worst first" in printed
    assert (tmp_path / "results.md").exists()


@pytest.mark.slow  # eight SB3 runs of 256 steps: ~10 s
def test_rl_only_runs_the_sb3_suite_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from agents.cli import transfer

    parser = argparse.ArgumentParser()
    transfer.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["transfer", "--rl-only", "--split", "validation", "--seeds", "1", "--rl-timesteps",
         "256", "--no-progress", "--out", str(tmp_path)]
    )  # fmt: skip
    assert args.func(args) == 0
    assert not (tmp_path / "results.json").exists()  # no supervised run
    result = json.loads((tmp_path / "rl_results.json").read_text())
    assert [(r["algorithm"], r["env_id"]) for r in result["runs"]] == [
        ("PPO", "CartPole-v1"), ("PPO", "Acrobot-v1"), ("A2C", "CartPole-v1"), ("A2C", "Acrobot-v1")
    ]  # fmt: skip
    assert {r["seed"] for r in result["runs"]} == {8_000}  # --split validation: seeds 8000+
    assert len((tmp_path / "rl_runs.jsonl").read_text().splitlines()) == 8
    assert "RL runs" in capsys.readouterr().out


@pytest.mark.slow  # 14 tiny runs, then 6: seconds
def test_a_new_bundle_reruns_only_the_policys_runs(
    tiny_task: TaskSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.benchmark.transfer import protocol

    _tiny_run(tiny_task, tmp_path)
    before = len((tmp_path / "runs.jsonl").read_text().splitlines())
    monkeypatch.setattr(protocol, "_policy_fingerprint", lambda ref: "another-bundle")
    _tiny_run(tiny_task, tmp_path)
    added = len((tmp_path / "runs.jsonl").read_text().splitlines()) - before
    assert added == len(SMALL["sweep_multipliers"]) * 2  # the policy's arms x 2 seeds
