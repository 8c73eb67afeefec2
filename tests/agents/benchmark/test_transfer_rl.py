"""RL transfer: summary arithmetic, config errors, and one tiny run of each algorithm."""

from __future__ import annotations

import pytest

from agents.benchmark.transfer.rl import RLTransferConfig, run_rl_transfer, summarize_rl
from hpo_env.errors import ConfigError


def test_summary_counts_not_worse_and_mean_difference() -> None:
    rows = [
        {
            "algorithm": "PPO",
            "env_id": "CartPole-v1",
            "default_return": 100.0,
            "policy_return": 100.0,
        },
        {
            "algorithm": "PPO",
            "env_id": "CartPole-v1",
            "default_return": 100.0,
            "policy_return": 50.0,
        },
        {
            "algorithm": "A2C",
            "env_id": "CartPole-v1",
            "default_return": 10.0,
            "policy_return": 40.0,
        },
    ]
    summary = summarize_rl(rows)
    assert summary["overall"] == {
        "n": 3,
        "not_worse": pytest.approx(2 / 3),
        "mean_difference": pytest.approx(-20 / 3),
    }
    assert summary["PPO CartPole-v1"]["not_worse"] == 0.5
    with pytest.raises(ConfigError, match="at least one"):
        summarize_rl([])


def test_bad_rl_config_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="did you mean 'CartPole-v1'"):
        RLTransferConfig(env_ids=("CartPole-v0",))
    with pytest.raises(ConfigError, match="unknown algorithm 'SAC'"):
        RLTransferConfig(algorithms=("SAC",))
    with pytest.raises(ConfigError, match="did you mean 'validation'"):
        RLTransferConfig(split="valid")


@pytest.mark.slow  # two SB3 runs per algorithm, one rollout each: seconds
def test_quick_rl_transfer_runs(tmp_path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run_rl_transfer(RLTransferConfig(quick=True, quick_timesteps=256, n_eval_episodes=1))
    assert [r["algorithm"] for r in result["runs"]] == ["PPO", "A2C"]
    assert [r["seed"] for r in result["runs"]] == [9_000, 9_000]  # the test split
    assert result["summary"]["overall"]["n"] == 2
    assert list(tmp_path.glob("SB3-*")) == []  # no stray SB3 log folder per run


@pytest.mark.slow  # eight SB3 runs of 128 steps and two worker processes: ~20 s
def test_rl_runs_resume_from_cache_and_do_not_depend_on_workers(tmp_path) -> None:
    from agents.policy.tuning_policy import resolve_bundle_path

    tiny = {"quick": True, "quick_timesteps": 128, "n_eval_episodes": 1}
    alone = run_rl_transfer(RLTransferConfig(out_dir=str(tmp_path / "a"), **tiny))
    assert alone["cached"] == 0 and len(alone["runs"]) == 2
    assert len((tmp_path / "a" / "rl_runs.jsonl").read_text().splitlines()) == 4

    pooled = run_rl_transfer(RLTransferConfig(out_dir=str(tmp_path / "b"), workers=2, **tiny))
    assert pooled["runs"] == alone["runs"]

    # The validation split trains other seeds: nothing of the test split's cache is reused.
    valid = run_rl_transfer(
        RLTransferConfig(split="validation", out_dir=str(tmp_path / "a"), **tiny)
    )
    assert valid["cached"] == 0 and {r["seed"] for r in valid["runs"]} == {8_000}

    again = run_rl_transfer(RLTransferConfig(out_dir=str(tmp_path / "a"), **tiny))
    assert again["cached"] == 4 and again["runs"] == alone["runs"]
    assert len((tmp_path / "a" / "rl_runs.jsonl").read_text().splitlines()) == 8

    # Another bundle retrains the policy's arm only: the defaults runs do not depend on it.
    member = str(resolve_bundle_path("default") / "members" / "0")
    other = run_rl_transfer(RLTransferConfig(policy=member, out_dir=str(tmp_path / "a"), **tiny))
    assert other["cached"] == 2
    assert [r["default_return"] for r in other["runs"]] == [
        r["default_return"] for r in alone["runs"]
    ]


def test_rl_workers_must_be_a_positive_int() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        RLTransferConfig(workers=0)
