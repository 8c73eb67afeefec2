"""`hpo-rl ablation`: every (row, seed) trained at one wall-clock budget, scored on
validation, one table; a rerun resumes instead of retraining."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from agents.cli.ablation import ROW_NAMES
from agents.train.ablation import (
    ROWS,
    AblationConfig,
    reproduce_command,
    row_by_name,
    run_ablation,
    train_command,
)


def test_cli_row_names_match_the_rows():
    assert tuple(r.name for r in ROWS) == ROW_NAMES


def test_each_row_adds_one_lever_to_the_one_before():
    # A lever is new settings or a changed one (the functional row swaps the distribution).
    for before, after in itertools.pairwise(ROWS):
        assert set(dict(before.overrides)) <= set(dict(after.overrides))
        assert dict(before.overrides) != dict(after.overrides)
    assert dict(row_by_name("functional").overrides)["distribution"].endswith(
        ":functional_recipe_distribution"
    )


def test_reproduce_command_names_the_rows_of_a_partial_table():
    partial = AblationConfig(rows=("paired", "functional"), seeds=(1, 2, 3), minutes=6.0)
    assert reproduce_command(partial) == (
        "hpo-rl ablation --rows paired functional --minutes 6 --seeds 1 2 3 --workers 2"
    )
    assert reproduce_command(AblationConfig(seeds=(4,))) == (
        "hpo-rl ablation --minutes 6 --seeds 4 --workers 2"
    )


def test_train_command_carries_overrides_budget_and_seed(tmp_path: Path):
    command = train_command(row_by_name("paired"), 7, tmp_path / "run", 2.5)
    joined = " ".join(command)
    assert "--preset baseline" in joined and "--seed 7" in joined
    assert "--max-wall-time-s 150.0" in joined and "--paired-reward true" in joined
    assert "--feature-spec-version 3" in joined and "--task-groups 8" in joined


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows", ("nope",), "ablation row"),
        ("seeds", (1, 1), "distinct seeds"),
        ("minutes", 0.0, "minutes"),
        ("sweep", (0.1, 10.0), "1.0"),
        ("preset", "fastest", "preset"),
    ],
)
def test_bad_settings_name_the_problem(field, value, message):
    with pytest.raises(ValueError, match=message):
        AblationConfig(**{field: value})


@pytest.mark.slow
def test_ablation_trains_scores_tabulates_and_resumes(tmp_path: Path):
    config = AblationConfig(
        rows=("baseline", "relative"),
        seeds=(1, 2),
        minutes=1e-4,  # one rollout each
        workers=2,
        transfer_seeds=1,
        sweep=(1.0,),
        preset="smoke",
        quick=True,
        out_dir=str(tmp_path),
        progress=False,
    )
    first = run_ablation(config)
    report = json.loads((tmp_path / "ablation.json").read_text())
    for name in ("baseline", "relative"):
        score = report["rows"][name]["2"]
        assert 0.0 <= score["win_rate"]["constant"] <= 1.0
        assert score["decisions"] > 0
        meta = json.loads((tmp_path / name / "seed1" / "bundle" / "metadata.json").read_text())
        assert meta["training"]["stopped_by_wall_time"] is True
    assert (
        json.loads((tmp_path / "relative" / "seed1" / "bundle" / "metadata.json").read_text())[
            "config"
        ]["feature_spec_version"]
        == 3
    )
    table = (tmp_path / "ablation.md").read_text()
    assert "| baseline |" in table and "| relative |" in table
    # Each row's seeds also act as one ensemble, scored like any bundle.
    assert "| relative ensemble |" in table
    assert report["ensembles"]["baseline"]["decisions"] == sum(
        report["rows"]["baseline"][s]["decisions"] for s in ("1", "2")
    )
    # A rerun resumes: no retraining (same bundle files), the same table.
    before = (tmp_path / "baseline" / "seed1" / "bundle" / "policy.safetensors").stat().st_mtime_ns
    second = run_ablation(config)
    after = (tmp_path / "baseline" / "seed1" / "bundle" / "policy.safetensors").stat().st_mtime_ns
    assert before == after
    assert second["table"] == first["table"]


def test_cli_defaults_are_the_config_defaults():
    from agents.cli import build_parser

    args = build_parser(["ablation"]).parse_args(["ablation"])
    config = AblationConfig()
    assert args.minutes == config.minutes and args.total_timesteps == config.total_timesteps
    assert tuple(args.seeds) == config.seeds and tuple(args.sweep) == config.sweep
    assert args.transfer_seeds == config.transfer_seeds and args.workers == config.workers
